"""LLaMA-Factory's `dataset_info.json` for the prepared splits.

The split files hold normalised OpenAI-style `messages`, so one sharegpt entry with explicit tags
describes all of them; LLaMA-Factory then reads them with no conversion of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = {"messages": "messages", "system": "system", "tools": "tools"}
TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


def dataset_info(dataset: str, split_files: dict[str, str | Path]) -> dict:
    """One registered dataset per split, named `<dataset>_<split>`, with file names relative to the info file."""
    return {
        f"{dataset}_{split}": {
            "file_name": Path(path).name,
            "formatting": "sharegpt",
            "columns": dict(COLUMNS),
            "tags": dict(TAGS),
        }
        for split, path in split_files.items()
    }


def write_dataset_info(dataset: str, split_files: dict[str, str | Path], out: str | Path) -> dict:
    info = dataset_info(dataset, split_files)
    Path(out).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return info
