"""prepare(): formats, schemas, the LLaMA-Factory demo files, stable splits, written outputs."""

import hashlib
import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from conch.data import PrepareResult, prepare
from conch.data.records import dedup_key
from conch.data.split import unit_interval
from conch.errors import ConfigError

DEMO = Path("/work/shared/datasets/llamafactory-demo")
ROOT = Path(__file__).resolve().parents[1]
MAGIC = [
    ROOT / "data/raw/magic_conch_en.json",
    ROOT / "data/raw/magic_conch_zh.jsonl",
    ROOT / "data/raw/magic_conch_extra.csv",
]
SCRIPT = ROOT / "workflow_scripts/prepare_dataset.py"

ALPACA = [
    {
        "instruction": "Translate to French.",
        "input": "Good morning",
        "output": "Bonjour",
        "system": "Be terse.",
    },
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
        {"role": "user", "content": "Translate to French.\nGood morning"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    assert records[0]["system"] == "Be terse." and records[0]["tools"] == ""
    assert [m["content"] for m in records[1]["messages"]] == [
        "Say hi.",
        "Hi.",
        "And good night?",
        "Bonne nuit",
    ]
    assert records[2]["messages"][0]["content"] == "Who are you?"  # empty input adds no newline
    assert [r["source"] for r in records] == [f"{tmp_path}/a.json:{n}" for n in (2, 8, 18)]


def test_sharegpt_tools_system_and_aliases(tmp_path):
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "From the turn."},
                {"from": "human", "value": "Weather?"},
                {"from": "function_call", "value": '{"name": "weather"}'},
                {"from": "observation", "value": '{"temp": 20}'},
                {"from": "gpt", "value": "20 degrees."},
            ],
            "system": "From the column.",
            "tools": '[{"name": "weather"}]',
        },
        {
            "conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            "tools": [{"name": "x"}],
        },
        {
            "conversations": [{"from": "Human", "value": "Hey"}, {"from": "GPT", "value": "Yo"}],
            "system": "S",
            "kto_tag": True,
        },
    ]
    records = one(write_json(tmp_path / "s.json", rows))
    assert records[0]["system"] == "From the turn."  # a leading system turn wins, as in LLaMA-Factory
    assert [m["role"] for m in records[0]["messages"]] == [
        "user",
        "function_call",
        "observation",
        "assistant",
    ]
    assert records[0]["tools"] == '[{"name": "weather"}]'
    assert records[1]["tools"] == '[{"name": "x"}]'
    assert records[2]["system"] == "S" and records[2]["messages"][1] == {"role": "assistant", "content": "Yo"}


def test_openai_messages_system_and_tool_role(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You are a shell."},
                {"role": "user", "content": "Time?"},
                {"role": "function_call", "content": '{"name": "now"}'},
                {"role": "tool", "content": "12:00"},
                {"role": "assistant", "content": "Noon."},
            ],
            "label": False,
        }
    ]
    result = prepare([str(write_jsonl(tmp_path / "m.jsonl", rows))])
    (record,) = [r for s in result.splits.values() for r in s]
    assert record["system"] == "You are a shell."
    assert [m["role"] for m in record["messages"]] == ["user", "function_call", "observation", "assistant"]
    assert result.stats["files"][str(tmp_path / "m.jsonl")]["ignored_columns"] == ["label"]


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
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    csv = tmp_path / "t.csv"
    pd.DataFrame({"messages": [json.dumps(turns)], "system": ["Sys"]}).to_csv(csv, index=False)
    hist = tmp_path / "h.csv"
    pd.DataFrame({"instruction": ["Q2"], "output": ["A2"], "history": [json.dumps([["Q1", "A1"]])]}).to_csv(
        hist, index=False
    )
    parquet = tmp_path / "t.parquet"
    pd.DataFrame(
        {"conversations": [[{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]]}
    ).to_parquet(parquet)
    assert one(csv)[0]["messages"] == turns and one(csv)[0]["system"] == "Sys"
    assert [m["content"] for m in one(hist)[0]["messages"]] == ["Q1", "A1", "Q2", "A2"]
    assert one(parquet)[0]["messages"] == turns
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
    path = DEMO / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    result = prepare([str(path)])
    check_reconciles(result)
    assert (result.stats["read"], result.stats["kept"], result.stats["rejected_by_reason"]) == (
        read,
        kept,
        rejects,
    )
    for split in result.splits.values():
        for record in split:
            check_record_shape(record)


def test_demo_records_pass_llamafactory_converter():
    path = DEMO / "glaive_toolcall_en_demo.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    converter = pytest.importorskip("llamafactory.data.converter")
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    attr = DatasetAttr(
        "file", "conch", formatting="sharegpt", system="system", tools="tools", messages="messages"
    )
    attr.role_tag, attr.content_tag, attr.user_tag, attr.assistant_tag = (
        "role",
        "content",
        "user",
        "assistant",
    )
    convert = converter.SharegptDatasetConverter(attr, DataArguments())
    for record in prepare([str(path)]).splits["train"]:
        out = convert(record)
        assert out["_prompt"] and out["_response"][0]["content"] == record["messages"][-1]["content"]


def test_project_data_has_no_rejects():
    if not all(p.exists() for p in MAGIC):
        pytest.skip("data/raw/magic_conch_* not generated yet")
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


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"seed": "42"}, "seed must be an integer"),
        ({"val_fraction": 1.5}, "val_fraction must be a number in [0, 1)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be below 1"),
        ({"max_chars": 0}, "max_chars must be a positive integer"),
        ({"dedup": "yes"}, "dedup must be true or false"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        prepare([str(write_jsonl(tmp_path / "d.jsonl", _numbered(3)))], **kwargs)
    assert fragment in str(err.value)


def test_bad_path_lists(tmp_path):
    path = str(write_jsonl(tmp_path / "d.jsonl", _numbered(3)))
    for paths, fragment in (
        ([], "no raw data files"),
        ([path, path], "more than once"),
        (path, "single path"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            prepare(paths)


# --- outputs ------------------------------------------------------------------------------------


def test_write_outputs_parse_and_match(tmp_path):
    src = write_json(tmp_path / "a.json", ALPACA + [{"instruction": "", "output": "x"}])
    result = prepare([str(src)], val_fraction=0.3, test_fraction=0.3)
    out = tmp_path / "out" / "nested"
    paths = result.write(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "rejects.jsonl",
        "stats.json",
        "test.jsonl",
        "train.jsonl",
        "val.jsonl",
    ]
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


def _run_script(tmp_path, raw):
    out = tmp_path / "results"
    names = {
        "train": "train.jsonl",
        "val": "val.jsonl",
        "test": "test.jsonl",
        "rejects": "rejects.jsonl",
        "stats": "stats.json",
    }
    snakemake = SimpleNamespace(
        input=SimpleNamespace(raw=raw),
        params=SimpleNamespace(seed=42, val_fraction=0.1, test_fraction=0.1, max_chars=8000, dedup=True),
        output=SimpleNamespace(**{k: str(out / v) for k, v in names.items()}),
        log=[str(tmp_path / "prepare.log")],
    )
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": snakemake})
    return out, (tmp_path / "prepare.log").read_text(encoding="utf-8")


def test_script_writes_outputs_and_logs_summary(tmp_path):
    raw = str(write_json(tmp_path / "a.json", ALPACA))
    out, log = _run_script(tmp_path, raw)  # one named input file arrives as a str
    assert log.startswith("prepare_dataset: read 3, kept 3") and log.count("\n") == 1
    assert json.loads((out / "stats.json").read_text())["kept"] == 3


def test_script_reports_user_errors_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_script(tmp_path, [str(tmp_path / "missing.json")])
    assert exit_info.value.code == 1
    log = (tmp_path / "prepare.log").read_text()
    assert "missing.json: file not found" in log and "Traceback" not in log
    assert "file not found" in capsys.readouterr().err
