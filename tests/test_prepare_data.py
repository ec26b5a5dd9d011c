"""prepare(): formats, schemas, the LLaMA-Factory demo files, stable splits, written outputs."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import DEMO

from conch.data import PrepareResult, prepare
from conch.data.pipeline import OUTPUT_FILES
from conch.data.records import dedup_key
from conch.data.split import unit_interval

ROOT = Path(__file__).resolve().parents[1]
MAGIC = [
    ROOT / "data/raw/magic_conch_en.json",
    ROOT / "data/raw/magic_conch_zh.jsonl",
    ROOT / "data/raw/magic_conch_extra.csv",
]

ALPACA = [
    {"instruction": "Translate.", "input": "Good morning", "output": "Bonjour", "system": "Be terse."},
    {"instruction": "And good night?", "output": "Bonne nuit", "history": [["Say hi.", "Hi."]]},
    {"instruction": "Who are you?", "input": "", "output": "神奇海螺。"},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def one(path: Path, **kwargs) -> list[dict]:
    """All kept records of one file, in input order."""
    result = prepare([str(path)], **kwargs)
    return sorted((r for s in result.splits.values() for r in s), key=lambda r: _order(r["source"]))


def _order(source: str) -> int:
    return int(source.rsplit(":", 1)[1].removeprefix("row "))


def check_reconciles(result: PrepareResult) -> None:
    s = result.stats
    assert s["read"] == s["kept"] + s["rejected"]
    assert s["rejected"] == len(result.rejects) == sum(s["rejected_by_reason"].values())
    assert sum(s["splits"].values()) == s["kept"] == sum(len(v) for v in result.splits.values())
    for f in s["files"].values():
        assert f["read"] == f["kept"] + f["rejected"]


def check_record_shape(record: dict) -> None:
    """What LLaMA-Factory's sharegpt converter accepts with conch's role/content tags."""
    assert set(record) == {"id", "messages", "system", "tools", "source"}
    assert len(record["id"]) == 16 and int(record["id"], 16) >= 0
    roles = [m["role"] for m in record["messages"]]
    assert roles[0] == "user" and roles[-1] == "assistant"
    for i, role in enumerate(roles):
        assert role in (("user", "observation") if i % 2 == 0 else ("assistant", "function_call"))
    assert all(m["content"] == m["content"].strip() and m["content"] for m in record["messages"])


# --- schemas -----------------------------------------------------------------------------------


def test_alpaca_input_system_history(tmp_path):
    records = one(write_json(tmp_path / "a.json", ALPACA))
    assert records[0]["messages"] == [
        {"role": "user", "content": "Translate.\nGood morning"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    assert records[0]["system"] == "Be terse." and records[0]["tools"] == ""
    history = [m["content"] for m in records[1]["messages"]]
    assert history == ["Say hi.", "Hi.", "And good night?", "Bonne nuit"]
    assert records[2]["messages"][0]["content"] == "Who are you?"  # empty input adds no newline
    assert [r["source"] for r in records] == [f"{tmp_path}/a.json:{n}" for n in (2, 8, 18)]


def turns(role_key: str, content_key: str, *pairs: str) -> list[dict]:
    """turns("from", "value", "human", "Hi", "gpt", "Hello") -> sharegpt turns."""
    return [{role_key: r, content_key: c} for r, c in zip(pairs[::2], pairs[1::2], strict=True)]


TOOL_CALL = ("function_call", '{"name": "now", "arguments": {}}', "observation", "12:00")
# A function without arguments, as LLaMA-Factory's tool formats read it (docs/data.md, tool records).
NO_ARGS = '"parameters": {"type": "object", "properties": {}}'


def test_sharegpt_tools_system_and_aliases(tmp_path):
    first = turns("from", "value", "system", "From the turn.", "human", "Time?", *TOOL_CALL, "gpt", "Noon.")
    rows = [
        {"conversations": first, "system": "From the column.", "tools": f'[{{"name": "now", {NO_ARGS}}}]'},
        {
            "conversations": turns("role", "content", "user", "Hi", "assistant", "Hello"),
            "tools": [{"name": "x", "parameters": {"type": "object", "properties": {}}}],
        },
        {
            "conversations": turns("from", "value", "Human", "Hey", "GPT", "Yo"),
            "system": "S",
            "kto_tag": True,
        },
    ]
    records = one(write_json(tmp_path / "s.json", rows))
    assert records[0]["system"] == "From the turn."  # a leading system turn wins, as in LLaMA-Factory
    roles = [m["role"] for m in records[0]["messages"]]
    assert roles == ["user", "function_call", "observation", "assistant"]
    assert records[0]["tools"] == f'[{{"name": "now", {NO_ARGS}}}]'
    # A parsed tools list goes back to a JSON string.
    assert records[1]["tools"] == f'[{{"name": "x", {NO_ARGS}}}]'
    assert records[2]["system"] == "S" and records[2]["messages"][1] == {"role": "assistant", "content": "Yo"}


def test_openai_messages_system_and_tool_role(tmp_path):
    tool_call = [TOOL_CALL[0], TOOL_CALL[1], "tool", TOOL_CALL[3]]
    messages = turns(
        "role", "content", "system", "You are a shell.", "user", "Time?", *tool_call, "assistant", "Noon."
    )
    tools = f'[{{"name": "now", {NO_ARGS}}}]'
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": messages, "tools": tools, "label": False}])
    result = prepare([str(path)])
    (record,) = [r for s in result.splits.values() for r in s]
    assert record["system"] == "You are a shell."
    assert [m["role"] for m in record["messages"]] == ["user", "function_call", "observation", "assistant"]
    assert result.stats["files"][str(path)]["ignored_columns"] == ["label"]


# --- formats: the same content gives the same records whatever the file format ----------------


def test_all_formats_agree(tmp_path):
    flat = [{k: v for k, v in r.items() if k != "history"} for r in ALPACA]
    frame = pd.DataFrame(flat).fillna("")
    paths = {
        "json": write_json(tmp_path / "x.json", flat),
        "jsonl": write_jsonl(tmp_path / "x.jsonl", flat),
        "csv": tmp_path / "x.csv",
        "parquet": tmp_path / "x.parquet",
    }
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    seen = {}
    for fmt, path in paths.items():
        result = prepare([str(path)])
        assert result.stats["files"][str(path)]["format"] == fmt
        seen[fmt] = [(r["id"], r["messages"], r["system"]) for r in one(path)]
    assert seen["json"] == seen["jsonl"] == seen["csv"] == seen["parquet"]
    assert len(seen["json"]) == 3


def test_csv_and_parquet_carry_turns_as_json(tmp_path):
    pair = turns("role", "content", "user", "Hi", "assistant", "Hello")
    csv, hist, parquet = tmp_path / "t.csv", tmp_path / "h.csv", tmp_path / "t.parquet"
    pd.DataFrame({"messages": [json.dumps(pair)], "system": ["Sys"]}).to_csv(csv, index=False)
    history = json.dumps([["Q1", "A1"]])
    pd.DataFrame({"instruction": ["Q2"], "output": ["A2"], "history": [history]}).to_csv(hist, index=False)
    pd.DataFrame({"conversations": [turns("from", "value", "human", "Hi", "gpt", "Hello")]}).to_parquet(
        parquet
    )
    assert one(csv)[0]["messages"] == pair and one(csv)[0]["system"] == "Sys"
    assert [m["content"] for m in one(hist)[0]["messages"]] == ["Q1", "A1", "Q2", "A2"]
    assert one(parquet)[0]["messages"] == pair
    assert one(parquet)[0]["source"] == f"{parquet}:row 1"


# --- the LLaMA-Factory demo files and the project's own data -----------------------------------

# (file, read, kept, rejects by reason): the demo files hold exact duplicates, and a few tool-call
# and KTO conversations exceed the default max_chars of 8000.
DEMO_COUNTS = [
    ("alpaca_en_demo.json", 999, 985, {"duplicate": 14}),
    ("alpaca_zh_demo.json", 1000, 992, {"duplicate": 8}),
    ("identity.json", 91, 91, {}),
    ("glaive_toolcall_en_demo.json", 300, 260, {"duplicate": 38, "too_long": 2}),
    ("kto_en_demo.json", 300, 282, {"too_long": 18}),
]


@pytest.mark.parametrize(("name", "read", "kept", "rejects"), DEMO_COUNTS, ids=[c[0] for c in DEMO_COUNTS])
def test_demo_files(name, read, kept, rejects):
    result = prepare([str(DEMO / name)])
    check_reconciles(result)
    s = result.stats
    assert (s["read"], s["kept"], s["rejected_by_reason"]) == (read, kept, rejects)
    for split in result.splits.values():
        for record in split:
            check_record_shape(record)


def test_demo_records_pass_llamafactory_converter():
    from llamafactory.data import converter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    # As conch.llamafactory.registry registers the splits: sharegpt formatting with role/content tags.
    columns = {"system": "system", "tools": "tools", "messages": "messages"}
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    attr = DatasetAttr("file", "conch", formatting="sharegpt", **columns, **tags)
    convert = converter.SharegptDatasetConverter(attr, DataArguments())
    for record in prepare([str(DEMO / "glaive_toolcall_en_demo.json")]).splits["train"]:
        out = convert(record)
        assert out["_prompt"] and out["_response"][0]["content"] == record["messages"][-1]["content"]


def test_project_data_has_no_rejects():
    result = prepare([str(p) for p in MAGIC])
    check_reconciles(result)
    assert result.rejects == []
    assert {f["format"] for f in result.stats["files"].values()} == {"json", "jsonl", "csv"}


# --- splits -------------------------------------------------------------------------------------


def _numbered(n: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Question {i}?", "output": f"Answer {i}."} for i in range(start, start + n)]


def test_split_is_stable_when_records_are_added(tmp_path):
    path = tmp_path / "d.jsonl"
    before = prepare([str(write_jsonl(path, _numbered(300)))])
    after = prepare([str(write_jsonl(path, _numbered(300) + _numbered(100, start=300)))])
    where = {r["id"]: name for name, split in before.splits.items() for r in split}
    moved = [
        r["id"] for name, split in after.splits.items() for r in split if where.get(r["id"], name) != name
    ]
    assert moved == [] and after.stats["kept"] == 400
    # Also stable when a whole new file is listed first.
    extra = write_jsonl(tmp_path / "e.jsonl", _numbered(50, start=1000))
    listed = prepare([str(extra), str(path)])
    assert all(where.get(r["id"], name) == name for name, split in listed.splits.items() for r in split)


def test_split_follows_seeded_hash_and_keeps_order(tmp_path):
    result = prepare(
        [str(write_jsonl(tmp_path / "d.jsonl", _numbered(500)))], seed=7, val_fraction=0.2, test_fraction=0.1
    )
    for name, split in result.splits.items():
        lines = [_order(r["source"]) for r in split]
        assert lines == sorted(lines)
        for r in split:
            key = dedup_key(r)
            assert r["id"] == hashlib.sha256(key.encode()).hexdigest()[:16]
            u = unit_interval(7, key)
            assert name == ("test" if u < 0.1 else "val" if u < 0.3 else "train")
    assert 20 < result.stats["splits"]["test"] < 80 and 70 < result.stats["splits"]["val"] < 130
    other = prepare([str(tmp_path / "d.jsonl")], seed=8, val_fraction=0.2, test_fraction=0.1)
    assert other.splits["test"] != result.splits["test"]


def test_zero_fractions_put_everything_in_train(tmp_path):
    result = prepare([str(write_jsonl(tmp_path / "d.jsonl", _numbered(40)))], val_fraction=0, test_fraction=0)
    assert result.stats["splits"] == {"train": 40, "val": 0, "test": 0}


# --- outputs ------------------------------------------------------------------------------------


def test_write_outputs_parse_and_match(tmp_path):
    src = write_json(tmp_path / "a.json", ALPACA + [{"instruction": "", "output": "x"}])
    result = prepare([str(src)], val_fraction=0.3, test_fraction=0.3)
    out = tmp_path / "out" / "nested"
    paths = result.write(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES.values())
    for name in ("train", "val", "test"):
        rows = [json.loads(line) for line in paths[name].read_text(encoding="utf-8").splitlines()]
        assert rows == result.splits[name]
    rejects = [json.loads(line) for line in paths["rejects"].read_text(encoding="utf-8").splitlines()]
    assert rejects == result.rejects and rejects[0]["reason"] == "empty_field"
    assert set(rejects[0]) == {"file", "line", "row", "reason", "detail", "raw"}
    stats = json.loads(paths["stats"].read_text(encoding="utf-8"))
    assert stats == result.stats and stats["read"] == 4 and stats["files"][str(src)]["format"] == "json"
    assert "神奇海螺" in "".join(p.read_text(encoding="utf-8") for p in paths.values())  # not \\u-escaped
    result.write(out)  # overwriting is fine and leaves no temp files behind
    assert len(list(out.iterdir())) == 5
