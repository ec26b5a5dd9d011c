"""prepare_preference(): read, normalise, dedup and split preference records; write them for LLaMA-Factory.

Mirrors conch.data.prepare (same readers, reject record shape, split rule and stats fields), with two
differences that matter for preference training:

- the split hashes the prompt, not the whole record, so every answer to a prompt lands in the same split
  and no held-out pair shares its prompt with a training pair;
- pairs also feed KTO: each train pair gives a desirable (chosen) and an undesirable (rejected) record
  next to the native KTO records, so `stage: kto` trains on the same data as `stage: dpo`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conch.data.pipeline import Screen, _atomic_write, _check_params, _jsonl
from conch.data.readers import read_file
from conch.data.split import SPLITS, assign_split
from conch.errors import DataError
from conch.preference.records import (
    KNOWN_KEYS,
    PrefReject,
    char_count,
    context,
    dedup_key,
    normalise_preference,
    prompt_key,
)
from conch.registry import TAGS

OUTPUT_FILES = {
    **{split: f"{split}.jsonl" for split in SPLITS},
    **{f"kto_{split}": f"kto_{split}.jsonl" for split in SPLITS},
    "rejects": "rejects.jsonl",
    "stats": "stats.json",
    "dataset_info": "dataset_info.json",
}


@dataclass
class PreferenceResult:
    pairs: dict[str, list[dict]]
    kto: dict[str, list[dict]]
    rejects: list[dict]
    stats: dict = field(default_factory=dict)

    def write(self, out_dir: str | os.PathLike, dataset: str) -> dict[str, Path]:
        """Write splits, rejects, stats and dataset_info.json; each file appears whole or not at all."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / filename for name, filename in OUTPUT_FILES.items()}
        for split in SPLITS:
            _atomic_write(paths[split], _jsonl(self.pairs[split]))
            _atomic_write(paths[f"kto_{split}"], _jsonl(self.kto[split]))
        _atomic_write(paths["rejects"], _jsonl(self.rejects))
        _atomic_write(paths["stats"], json.dumps(self.stats, ensure_ascii=False, indent=2) + "\n")
        info = dataset_info(dataset)
        _atomic_write(paths["dataset_info"], json.dumps(info, ensure_ascii=False, indent=2) + "\n")
        return paths


def dataset_info(dataset: str) -> dict:
    """`<dataset>_<split>`: pairs (ranking: true); `<dataset>_kto_<split>`: KTO records (kto_tag column)."""
    common = {"formatting": "sharegpt", "tags": dict(TAGS)}
    info = {}
    for split in SPLITS:
        info[f"{dataset}_{split}"] = {
            "file_name": f"{split}.jsonl",
            "ranking": True,
            **common,
            "columns": {
                "messages": "messages",
                "chosen": "chosen",
                "rejected": "rejected",
                "system": "system",
                "tools": "tools",
            },
        }
        info[f"{dataset}_kto_{split}"] = {
            "file_name": f"kto_{split}.jsonl",
            **common,
            "columns": {"messages": "messages", "kto_tag": "kto_tag", "system": "system", "tools": "tools"},
        }
    return info


def prepare_preference(
    paths: list[str],
    *,
    seed: int = 42,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_chars: int = 8000,
    dedup: bool = True,
) -> PreferenceResult:
    """Read every file in order; see docs/preference.md for what is kept, rejected or raised."""
    paths = _check_params(paths, seed, val_fraction, test_fraction, max_chars, dedup)
    pairs: dict[str, list[dict]] = {split: [] for split in SPLITS}
    native_kto: dict[str, list[dict]] = {split: [] for split in SPLITS}
    rejects: list[dict] = []
    files: dict[str, dict] = {}
    screen = Screen(
        normalise_preference, char_count, dedup_key, PrefReject, max_chars, dedup, "prompt + answers", rejects
    )
    for path in paths:
        read = read_file(path)
        counts = {"read": 0, "kept": 0, "rejected": 0, "pairs": 0, "kto": 0}
        for source, record, key in screen.records(path, read.items, counts):
            counts["pairs" if record["kind"] == "pair" else "kto"] += 1
            split = assign_split(
                prompt_key(record), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
            )
            kind = record.pop("kind")
            row = {"id": hashlib.sha256(key.encode()).hexdigest()[:16], **record, "source": source}
            (pairs if kind == "pair" else native_kto)[split].append(row)
        keys = {str(k) for item in read.items if isinstance(item.value, dict) for k in item.value}
        files[path] = {**counts, "format": read.format, "ignored_columns": sorted(keys - KNOWN_KEYS)}
    kto = {split: native_kto[split] + unpaired(pairs[split]) for split in SPLITS}
    stats = _stats(pairs, native_kto, kto, rejects, files)
    stats["params"] = {
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "max_chars": max_chars,
        "dedup": dedup,
    }
    if not stats["kept"]:
        examples = "; ".join(
            f"{r['file']}:{r['line'] if r['line'] is not None else 'row ' + str(r['row'])} {r['reason']} "
            f"({r['detail']})"
            for r in rejects[:3]
        )
        raise DataError(
            f"no usable preference records: all {stats['read']} records read were rejected "
            f"{stats['rejected_by_reason']}; e.g. {examples}. See docs/preference.md for the reasons."
        )
    if not pairs["train"] and not native_kto["train"]:
        raise DataError(
            f"no preference record landed in the train split ({stats['kept']} kept); add records or lower "
            "preference.data.val_fraction/test_fraction."
        )
    return PreferenceResult(pairs, kto, rejects, stats)


def unpaired(pairs: list[dict]) -> list[dict]:
    """Each pair as two KTO records: the prompt with chosen (desirable), and with rejected (undesirable)."""
    out = []
    for pair in pairs:
        for side, tag in (("chosen", True), ("rejected", False)):
            out.append(
                {
                    "id": f"{pair['id']}-{side}",
                    "messages": [*pair["messages"], pair[side]],
                    "system": pair["system"],
                    "tools": pair["tools"],
                    "kto_tag": tag,
                    "source": pair["source"],
                }
            )
    return out


def prompts(records: list[dict]) -> list[list[dict]]:
    """The distinct prompts (system + turns before the answer) of pair and KTO records, in order."""
    seen, out = set(), []
    for record in records:
        turns = context(record)
        key = json.dumps(turns, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(turns)
    return out


def _stats(pairs: dict, native_kto: dict, kto: dict, rejects: list[dict], files: dict) -> dict:
    stats = {
        "read": sum(f["read"] for f in files.values()),
        "kept": sum(f["kept"] for f in files.values()),
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
        "splits": {split: len(pairs[split]) for split in SPLITS},
        "kto_native": {split: len(native_kto[split]) for split in SPLITS},
        "kto_splits": {
            split: {
                "desirable": sum(r["kto_tag"] for r in kto[split]),
                "undesirable": sum(not r["kto_tag"] for r in kto[split]),
            }
            for split in SPLITS
        },
        "files": files,
    }
    kept = sum(stats["splits"].values()) + sum(stats["kto_native"].values())
    if stats["read"] != stats["kept"] + stats["rejected"] or kept != stats["kept"]:
        raise RuntimeError("conch bug: read != kept + rejected, or splits do not add up to the kept count")
    return stats
