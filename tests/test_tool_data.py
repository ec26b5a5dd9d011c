"""Tool records through preparation: LLaMA-Factory's own tool data passes unchanged, malformed tool data is
rejected with its reason (tests/test_bad_data.py has the corpus row), and what is kept LLaMA-Factory formats
without complaint while what is rejected as malformed would stop its run."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from conch.data import prepare

HERE = Path(__file__).resolve().parent
GLAIVE = HERE / "data" / "tool_records" / "glaive_toolcall_sample.json"
BAD = HERE / "data" / "bad" / "tool_calls.jsonl"
BUNDLED = HERE.parent / "data" / "raw" / "tool_calls_en.json"
ROLES = {"user": "user", "assistant": "assistant", "function_call": "function", "observation": "observation"}
RAW_ROLES = {"human": "user", "gpt": "assistant", "tool": "observation"}


def kept(path: Path) -> list[dict]:
    result = prepare([str(path)], val_fraction=0, test_fraction=0)
    return result.splits["train"]


@functools.cache
def qwen():
    from conch.llamafactory.trained_format import TrainedFormat
    from conch.model.scratch import train_tokenizer

    return TrainedFormat(train_tokenizer(["What is the weather?"] * 3, 300), "qwen")


def llamafactory_encodes(record: dict) -> str:
    """The text LLaMA-Factory trains on for a record in conch's prepared (or a raw sharegpt) form."""
    fmt = qwen()
    turns = record.get("messages") or record["conversations"]
    messages = [
        {
            "role": ROLES[RAW_ROLES.get(t.get("role", t.get("from")), t.get("role", t.get("from")))],
            "content": t.get("content", t.get("value")),
        }
        for t in turns
    ]
    tools = record["tools"] if isinstance(record["tools"], str) else json.dumps(record["tools"])
    pairs = fmt.template.encode_multiturn(
        fmt.tokenizer, messages, record.get("system") or None, tools or None
    )
    return fmt.tokenizer.decode([i for prompt, answer in pairs for i in prompt + answer])


def test_llamafactorys_tool_demo_passes_unchanged():
    raw = json.loads(GLAIVE.read_text(encoding="utf-8"))
    records = kept(GLAIVE)
    assert len(records) == len(raw)
    by_source = {int(r["source"].rsplit(":", 1)[1]): r for r in records}
    lines = GLAIVE.read_text(encoding="utf-8").splitlines()
    starts = [n for n, line in enumerate(lines, 1) if line == "  {"]
    for line, original in zip(starts, raw, strict=True):
        record = by_source[line]
        assert record["tools"] == original["tools"]
        assert [m["content"] for m in record["messages"]] == [t["value"] for t in original["conversations"]]
        assert [m["role"] for m in record["messages"]] == [
            {"human": "user", "gpt": "assistant"}.get(t["from"], t["from"]) for t in original["conversations"]
        ]
        # What LLaMA-Factory trains on is the same whether it reads conch's output or the raw record.
        assert llamafactory_encodes(record) == llamafactory_encodes(original)


def test_the_bundled_tool_dataset_is_clean_and_really_calls_tools():
    result = prepare([str(BUNDLED)])
    assert result.stats["rejected"] == 0
    records = [r for split in result.splits.values() for r in split]
    calls = [m for r in records for m in r["messages"] if m["role"] == "function_call"]
    assert len(calls) >= 150 and all(json.loads(m["content"])["name"] == "get_weather" for m in calls)
    assert sum(not r["tools"] for r in records) >= 5  # plain questions without tools offered too


def test_what_is_kept_llamafactory_formats_and_malformed_tool_data_would_stop_it():
    for record in kept(BAD):
        assert llamafactory_encodes(record)
    lines = BAD.read_text(encoding="utf-8").splitlines()
    reasons = {r["line"]: r["reason"] for r in prepare([str(BAD)], val_fraction=0, test_fraction=0).rejects}
    # A call that is not JSON or lacks its arguments, tools that are not JSON or not a list: LLaMA-Factory's
    # formatters raise, and the whole training run stops.
    for line in (4, 6, 7, 8):
        assert reasons[line].startswith("malformed_")
        with pytest.raises((RuntimeError, KeyError, AttributeError)):
            llamafactory_encodes(json.loads(lines[line - 1]))
    # Arguments as a string and a tool without parameters pass the qwen format, but no OpenAI client reads
    # such a call, and LLaMA-Factory's default format fails on such a tool: rejected all the same.
    assert (reasons[5], reasons[9]) == ("malformed_tool_call", "malformed_tools")
