"""prepare(): read, normalise, dedup, split and count; PrepareResult.write() puts it on disk."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conch.data.records import char_count, dedup_key, normalise
from conch.data.rejects import RecordReject
from conch.data.screen import Screen, Settings, raw_paths
from conch.data.split import SPLITS
from conch.jobs.files import write_json, write_jsonl

OUTPUT_FILES = {
    "train": "train.jsonl",
    "val": "val.jsonl",
    "test": "test.jsonl",
    "rejects": "rejects.jsonl",
    "stats": "stats.json",
}


@dataclass
class PrepareResult:
    splits: dict[str, list[dict]]
    rejects: list[dict]
    stats: dict = field(default_factory=dict)

    def write(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write the five output files; each appears whole or not at all."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / filename for name, filename in OUTPUT_FILES.items()}
        for name in SPLITS:
            write_jsonl(paths[name], self.splits[name])
        write_jsonl(paths["rejects"], self.rejects)
        write_json(paths["stats"], self.stats)
        return paths


def prepare(paths: list[str], **settings) -> PrepareResult:
    """Read every file in order; see docs/data.md for what is kept, rejected or raised.
    `settings`: the fields of conch.data.Settings (seed, val_fraction, test_fraction, max_chars, dedup)."""
    paths, settings = raw_paths(paths), Settings(**settings)
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    screen = Screen(normalise, char_count, dedup_key, RecordReject, settings, "system + messages")
    for source, record, key, _ in screen.read(paths):
        record_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        splits[settings.split(key)].append({"id": record_id, **record, "source": source})
    stats = screen.totals(placed=sum(map(len, splits.values())))
    stats.update(splits={name: len(records) for name, records in splits.items()}, files=screen.files)
    stats["params"] = asdict(settings)
    if not stats["kept"]:
        raise screen.nothing_kept("records", "Fix the records (see docs/data.md for the reasons).")
    return PrepareResult(splits, screen.rejects, stats)
