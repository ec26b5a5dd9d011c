"""Rule measure_token_lengths: the token length of every train and val record, rendered by the base model's
chat template.

Once per dataset, not once per experiment: train_adapter compares these with its cutoff_len (LLaMA-Factory
truncates longer records silently), and the summary helps choose cutoff_len.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from transformers import AutoTokenizer

from conch.jobs.files import read_jsonl
from conch.model.hub import base_model_path


def run(input, output, params, log):
    tokenizer = AutoTokenizer.from_pretrained(base_model_path(input.base))
    result = {}
    for split in ("train", "val"):
        result[split] = [length(tokenizer, r, params.default_system) for r in read_jsonl(input[split])]
    result["summary"] = {split: summary(result[split]) for split in ("train", "val")}
    Path(output[0]).write_text(json.dumps(result) + "\n", encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"token lengths with {tokenizer.name_or_path}: {json.dumps(result['summary'])}\n")


def length(tokenizer, record: dict, default_system: str | None) -> int:
    system = record.get("system") or default_system
    messages = ([{"role": "system", "content": system}] if system else []) + record["messages"]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # no chat template, or one without tool roles: count the bare contents
        text = "\n".join(m["content"] for m in messages)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def summary(lengths: list[int]) -> dict:
    if not lengths:
        return {"records": 0}
    ranked = sorted(lengths)
    return {
        "records": len(ranked),
        "mean": round(statistics.fmean(ranked), 1),
        "p50": ranked[len(ranked) // 2],
        "p95": ranked[min(len(ranked) - 1, int(0.95 * len(ranked)))],
        "max": ranked[-1],
    }
