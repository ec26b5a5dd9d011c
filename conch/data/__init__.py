"""Data preparation: raw alpaca/sharegpt/OpenAI files in, LLaMA-Factory-ready splits out.

See docs/data.md for the formats, reject reasons, split rule and stats fields. The public core: prepare(),
the screening loop a preparation builds on (Screen, Settings, raw_paths), atomic writes and JSONL.
"""

from conch.data.pipeline import PrepareResult, prepare
from conch.data.rejects import REASONS
from conch.data.screen import Screen, Settings, raw_paths, settings_of
from conch.jobs.files import as_paths, atomic_write, read_jsonl, write_json, write_jsonl

__all__ = [
    "REASONS",
    "PrepareResult",
    "Screen",
    "Settings",
    "as_paths",
    "atomic_write",
    "prepare",
    "raw_paths",
    "read_jsonl",
    "settings_of",
    "write_json",
    "write_jsonl",
]
