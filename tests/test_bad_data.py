"""The bad-data corpus (tests/data/bad/): each bad input and what prepare() does with it.

The table is the contract documented in docs/data.md: a row is kept, rejected with a reason,
or fails the whole run with a DataError whose message tells the user where and what to fix.
"""

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from conch.data import REASONS, prepare
from conch.data.pipeline import OUTPUT_FILES
from conch.errors import ConfigError, DataError

BAD = Path(__file__).resolve().parent / "data" / "bad"
SCRIPT = Path(__file__).resolve().parents[1] / "workflow_scripts" / "prepare_dataset.py"


@dataclass(frozen=True)
class Kept:
    """The file is read; `kept` records survive and the rest are rejected with these reasons."""

    kept: int
    rejects: dict = field(default_factory=dict)
    details: tuple = ()  # fragments each found in some reject's detail


@dataclass(frozen=True)
class Fails:
    """The whole run stops with a DataError whose message holds every fragment."""

    fragments: tuple


def parquet_extra_columns(tmp: Path) -> Path:
    path = tmp / "extra_columns.parquet"
    pd.DataFrame(
        {
            "instruction": ["Say hi.", "Say bye.", "Say nothing.", "Count."],
            "input": ["", None, "", ""],
            "output": ["Hi.", "Bye.", None, "   "],
            "score": [1, 2, 3, 4],
            "label": ["a", "b", "c", "d"],
        }
    ).to_parquet(path, index=False)
    return path


def parquet_wrong_columns(tmp: Path) -> Path:
    path = tmp / "wrong_columns.parquet"
    pd.DataFrame({"prompt": ["Say hi."], "completion": ["Hi."]}).to_parquet(path, index=False)
    return path


def parquet_corrupt(tmp: Path) -> Path:
    path = tmp / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    return path


# fmt: off
CASES = [
    # --- whole-file errors -------------------------------------------------------------------
    ("truncated.json",           Fails(("truncated.json", "line 3, column 31", "looks truncated"))),
    ("top_level_object.json",    Fails(("top level is a JSON object", "array of record objects"))),
    ("jsonl_named_json.json",    Fails(("line 2, column 1", "Extra data", "name it .jsonl"))),
    ("array_of_strings.json",    Fails(("the array holds no objects",))),
    ("empty_array.json",         Fails(("holds no records",))),
    ("invalid_utf8.json",        Fails(("not valid UTF-8 at byte offset 69", "line 3", "0xe9"))),
    ("invalid_utf8.csv",         Fails(("not valid UTF-8 at byte offset 41", "line 3"))),
    ("data.txt",                 Fails(("unsupported file type '.txt'", ".jsonl", ".parquet"))),
    ("data.xml",                 Fails(("unsupported file type '.xml'", ".csv"))),
    ("no_extension",             Fails(("unsupported file type '(no extension)'",))),
    ("array_named_jsonl.jsonl",  Fails(("line 1 starts a JSON array", "rename it to .json"))),
    ("empty.json",               Fails(("empty.json: file is empty (0 bytes)",))),
    ("whitespace_only.jsonl",    Fails(("file is empty (only whitespace)",))),
    ("header_only.csv",          Fails(("holds no records",))),
    ("missing.json",             Fails(("missing.json: file not found",))),
    ("wrong_columns.csv",        Fails(("found columns ['question', 'answer']", "instruction and output"))),
    ("unbalanced_quote.csv",     Fails(("cannot parse as CSV", "double-quoted"))),
    (parquet_wrong_columns,      Fails(("found columns ['prompt', 'completion']",))),
    (parquet_corrupt,            Fails(("cannot read as Parquet",))),
    ("all_rejected.jsonl",       Fails(("no usable records", "empty_field", "all_rejected.jsonl:1"))),
    # --- accepted as they are ----------------------------------------------------------------
    ("bom.json",                 Kept(2)),
    ("bom.jsonl",                Kept(2)),
    ("bom.csv",                  Kept(2)),
    ("crlf.json",                Kept(2)),
    ("crlf.jsonl",               Kept(2)),
    ("crlf.csv",                 Kept(2)),
    # --- per-record rejects ------------------------------------------------------------------
    ("broken_line.jsonl",        Kept(3, {"malformed_json": 1}, ("column 56",))),
    ("invalid_utf8_line.jsonl",  Kept(2, {"invalid_utf8": 1}, ("byte 0xe9 at column 21", "file byte offset 77"))),
    ("wrong_types.jsonl",        Kept(1, {"wrong_type": 9}, (
        "output: expected a string, got number", "output: expected a string, got null",
        "output: expected a string, got list", "instruction: expected a string, got number",
        "history: expected a list", "messages[1].content: expected a string, got null"))),
    ("empty_fields.jsonl",       Kept(2, {"empty_field": 6}, (
        "instruction is empty", "output is empty", "instruction is whitespace only",
        "output is whitespace only", "conversations[1].value is whitespace only", "messages is an empty list"))),
    ("duplicates.jsonl",         Kept(3, {"duplicate": 4}, ("same as", "duplicates.jsonl:1"))),
    ("too_long.jsonl",           Kept(2, {"too_long": 2}, ("182 characters", "> max_chars 100")), {"max_chars": 100}),
    ("quoted_newlines.csv",      Kept(4, {"empty_field": 1}, ("output is empty",))),
    ("messages_column.csv",      Kept(1, {"malformed_json": 1, "unknown_role": 1}, ("column 'messages'", "'bot'"))),
    ("sharegpt_roles.json",      Kept(1, {"wrong_role_order": 7, "unknown_role": 1, "missing_field": 1}, (
        "first turn must be user", "conversations[1] is user, expected assistant or function_call",
        "ends with user", "ends with function_call", "system turn is only allowed first",
        "conversations[2] is function_call, expected user or observation", "only a system turn",
        "conversations[1].from is 'bot'", "conversations[1].from"))),
    ("not_objects.jsonl",        Kept(1, {"not_an_object": 4, "unknown_schema": 1, "missing_field": 2}, (
        "got string", "got list", "got number", "got null", "keys found: answer, question",
        "output (alpaca records need", "instruction (alpaca records need"))),
    (parquet_extra_columns,      Kept(2, {"wrong_type": 1, "empty_field": 1}, ("output: expected a string, got null",))),
    ("tool_calls.jsonl",         Kept(3, {"unknown_tool": 2, "malformed_tool_call": 3, "malformed_tools": 3,
                                          "orphan_observation": 2}, (
        "calls 'book_flight'; the record's tools offer: get_weather", "the record's tools offer: none",
        "conversations[1] (function_call) is not valid JSON", "arguments of get_weather is string",
        'expected {"name": ..., "arguments": {...}}', "tools is not valid JSON",
        "tools: expected a list of functions, got object", "parameters must be an object with properties",
        "conversations[2] is an observation after assistant", "conversations[1] is a function_call followed by user"))),
]
# fmt: on


def _id(case) -> str:
    return case[0] if isinstance(case[0], str) else case[0].__name__


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_outcome(case, tmp_path):
    source, expected, *rest = case
    kwargs = rest[0] if rest else {}
    path = str(BAD / source) if isinstance(source, str) else str(source(tmp_path))
    if isinstance(expected, Fails):
        with pytest.raises(DataError) as err:
            prepare([path], **kwargs)
        for fragment in expected.fragments:
            assert fragment in str(err.value)
        return
    result = prepare([path], **kwargs)
    stats = result.stats["files"][path]
    assert stats["read"] == stats["kept"] + stats["rejected"]
    assert (stats["kept"], result.stats["rejected_by_reason"]) == (expected.kept, expected.rejects)
    details = " | ".join(r["detail"] for r in result.rejects)
    for fragment in expected.details:
        assert fragment in details
    assert all(r["reason"] in REASONS and r["file"] == path for r in result.rejects)


def test_every_reason_code_is_exercised():
    seen = {reason for case in CASES if isinstance(case[1], Kept) for reason in case[1].rejects}
    assert seen == set(REASONS)


def _records(path: Path, **kwargs) -> list[dict]:
    return [r for split in prepare([str(path)], **kwargs).splits.values() for r in split]


def test_reject_positions():
    (broken,) = prepare([str(BAD / "broken_line.jsonl")]).rejects
    assert (broken["line"], broken["row"]) == (3, None) and broken["raw"].startswith('{"instruction": "Count')
    # Quoted newlines span several lines, but rows count data rows.
    (empty,) = prepare([str(BAD / "quoted_newlines.csv")]).rejects
    assert (empty["line"], empty["row"]) == (None, 4) and json.loads(empty["raw"])[
        "instruction"
    ] == "Say nothing."
    rejects = prepare([str(BAD / "sharegpt_roles.json")]).rejects
    assert [(r["line"], r["row"]) for r in rejects][:2] == [(23, 2), (35, 3)]


def test_invalid_utf8_offsets_match_the_bytes():
    bad_byte = b"\xe9"
    offset = (BAD / "invalid_utf8_line.jsonl").read_bytes().index(bad_byte)
    (reject,) = prepare([str(BAD / "invalid_utf8_line.jsonl")]).rejects
    assert f"file byte offset {offset}" in reject["detail"] and "\ufffd" in reject["raw"]
    offset = (BAD / "invalid_utf8.json").read_bytes().index(bad_byte)
    with pytest.raises(DataError, match=f"byte offset {offset} "):
        prepare([str(BAD / "invalid_utf8.json")])


@pytest.mark.parametrize("name", ["bom.json", "bom.jsonl", "bom.csv", "crlf.json", "crlf.jsonl", "crlf.csv"])
def test_bom_and_crlf_leave_no_trace(name):
    records = _records(BAD / name)
    text = json.dumps(records, ensure_ascii=False)
    assert "\ufeff" not in text and "\\r" not in text
    assert {m["content"] for r in records for m in r["messages"]} >= {"Say hi.", "Hi."}


def test_crlf_inside_quoted_csv_cell_becomes_lf():
    assert any(r["messages"][1]["content"] == "Line one.\nLine two." for r in _records(BAD / "crlf.csv"))


def test_quoted_newlines_commas_and_quotes_survive():
    contents = {m["content"] for r in _records(BAD / "quoted_newlines.csv") for m in r["messages"]}
    assert "apple\nbanana\ncherry" in contents and 'Quote "Hamlet", please.' in contents
    assert "List three fruits,\none per line." in contents


def test_whitespace_around_fields_is_stripped():
    kept = _records(BAD / "empty_fields.jsonl")
    assert kept[-1]["messages"] == [
        {"role": "user", "content": "Say bye."},
        {"role": "assistant", "content": "Bye."},
    ]


def test_duplicates_keep_first_and_can_be_disabled():
    kept = _records(BAD / "duplicates.jsonl")
    assert sorted(r["source"].rsplit(":", 1)[1] for r in kept) == ["1", "6", "7"]
    assert len(_records(BAD / "duplicates.jsonl", dedup=False)) == 7


def test_duplicates_across_files_name_the_first_file(tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes((BAD / "crlf.jsonl").read_bytes())
    result = prepare([str(BAD / "bom.jsonl"), str(copy)])
    assert result.stats["files"][str(copy)] | {"ignored_columns": []} == {
        "read": 2,
        "kept": 0,
        "rejected": 2,
        "format": "jsonl",
        "ignored_columns": [],
    }
    assert all(f"{BAD / 'bom.jsonl'}:" in r["detail"] for r in result.rejects)


def test_max_chars_boundary():
    # too_long.jsonl line 4 holds exactly 100 characters of messages.
    assert any(r["source"].endswith(":4") for r in _records(BAD / "too_long.jsonl", max_chars=100))
    assert not any(r["source"].endswith(":4") for r in _records(BAD / "too_long.jsonl", max_chars=99))


def test_raw_is_capped_at_500_characters(tmp_path):
    path = tmp_path / "long.jsonl"
    lines = [{"instruction": "Ok?", "output": "Ok."}, {"instruction": "Long?", "output": "x" * 2000}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    (reject,) = prepare([str(path)], max_chars=1000).rejects
    assert reject["reason"] == "too_long" and len(reject["raw"]) == 500


def test_parquet_reports_ignored_columns(tmp_path):
    path = str(parquet_extra_columns(tmp_path))
    result = prepare([path])
    assert result.stats["files"][path]["ignored_columns"] == ["label", "score"]
    assert [(r["row"], r["reason"]) for r in result.rejects] == [(3, "wrong_type"), (4, "empty_field")]


def test_one_bad_file_fails_the_run_and_names_it():
    with pytest.raises(DataError, match="truncated.json"):
        prepare([str(BAD / "bom.json"), str(BAD / "truncated.json")])


# --- bad parameters, and the rule script's summary and error path ------------------------------------------


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
def test_bad_parameters(kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        prepare([str(BAD / "bom.jsonl")], **kwargs)
    assert fragment in str(err.value)


def test_bad_path_lists():
    path = str(BAD / "bom.jsonl")
    for paths, fragment in (([], "no raw files"), ([path, path], "more than once"), (path, "single path")):
        with pytest.raises(ConfigError, match=fragment):
            prepare(paths)


def _run_script(tmp_path, raw):
    out = tmp_path / "results"
    snakemake = SimpleNamespace(
        input=SimpleNamespace(raw=raw),
        params=SimpleNamespace(seed=42, val_fraction=0.1, test_fraction=0.1, max_chars=8000, dedup=True),
        output=SimpleNamespace(**{k: str(out / v) for k, v in OUTPUT_FILES.items()}),
        log=[str(tmp_path / "prepare.log")],
    )
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": snakemake})
    return out, (tmp_path / "prepare.log").read_text(encoding="utf-8")


def test_script_writes_outputs_and_logs_summary(tmp_path):
    out, log = _run_script(tmp_path, str(BAD / "duplicates.jsonl"))  # one named input arrives as a str
    assert log.startswith("prepare_dataset: read 7, kept 3") and "{'duplicate': 4}" in log
    assert log.count("\n") == 1 and json.loads((out / "stats.json").read_text())["kept"] == 3


def test_script_reports_user_errors_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_script(tmp_path, [str(tmp_path / "missing.json")])
    assert exit_info.value.code == 1
    log = (tmp_path / "prepare.log").read_text()
    assert "missing.json: file not found" in log and "Traceback" not in log
    assert "file not found" in capsys.readouterr().err
