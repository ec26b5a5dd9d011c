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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conch.data import Screen, Settings, raw_paths, write_json, write_jsonl
from conch.data.split import SPLITS
from conch.errors import DataError
from conch.llamafactory.registry import TAGS
from conch.preference.pairs import (
    KNOWN_KEYS,
    PrefReject,
    char_count,
    context,
    dedup_key,
    normalise_preference,
    prompt_key,
)

# Held-out pairs are what preference accuracy is measured on: config/schema.yaml's
# preference.data.test_fraction (tests/test_config.py checks they agree).
TEST_FRACTION = 0.2
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
            write_jsonl(paths[split], self.pairs[split])
            write_jsonl(paths[f"kto_{split}"], self.kto[split])
        write_jsonl(paths["rejects"], self.rejects)
        write_json(paths["stats"], self.stats)
        write_json(paths["dataset_info"], dataset_info(dataset))
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


def prepare_preference(paths: list[str], **settings) -> PreferenceResult:
    """Read every file in order; see docs/preference.md for what is kept, rejected or raised.
    `settings`: the fields of conch.data.Settings; a larger test split by default (TEST_FRACTION)."""
    paths, settings = raw_paths(paths), Settings(**{"test_fraction": TEST_FRACTION, **settings})
    pairs: dict[str, list[dict]] = {split: [] for split in SPLITS}
    native_kto: dict[str, list[dict]] = {split: [] for split in SPLITS}
    screen = Screen(normalise_preference, char_count, dedup_key, PrefReject, settings, "prompt + answers")
    screen.known_keys = KNOWN_KEYS
    for source, record, key, counts in screen.read(paths, "pairs", "kto"):
        counts["pairs" if record["kind"] == "pair" else "kto"] += 1
        split = settings.split(prompt_key(record))
        kind = record.pop("kind")
        row = {"id": hashlib.sha256(key.encode()).hexdigest()[:16], **record, "source": source}
        (pairs if kind == "pair" else native_kto)[split].append(row)
    kto = {split: native_kto[split] + unpaired(pairs[split]) for split in SPLITS}
    placed = sum(map(len, pairs.values())) + sum(map(len, native_kto.values()))
    stats = {**screen.totals(placed), **_split_stats(pairs, native_kto, kto), "files": screen.files}
    stats["params"] = asdict(settings)
    if not stats["kept"]:
        raise screen.nothing_kept("preference records", "See docs/preference.md for the reasons.")
    if not pairs["train"] and not native_kto["train"]:
        raise DataError(
            f"no preference record landed in the train split ({stats['kept']} kept); add records or lower "
            "preference.data.val_fraction/test_fraction."
        )
    return PreferenceResult(pairs, kto, screen.rejects, stats)


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


def _split_stats(pairs: dict, native_kto: dict, kto: dict) -> dict:
    return {
        "splits": {split: len(pairs[split]) for split in SPLITS},
        "kto_native": {split: len(native_kto[split]) for split in SPLITS},
        "kto_splits": {
            split: {
                "desirable": sum(r["kto_tag"] for r in kto[split]),
                "undesirable": sum(not r["kto_tag"] for r in kto[split]),
            }
            for split in SPLITS
        },
    }
