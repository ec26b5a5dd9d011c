"""prepare(): read, normalise, dedup, split and count; PrepareResult.write() puts it on disk."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conch.data.readers import read_file
from conch.data.records import RecordReject, char_count, dedup_key, normalise
from conch.data.split import SPLITS, assign_split
from conch.errors import ConfigError, DataError

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
            _atomic_write(paths[name], _jsonl(self.splits[name]))
        _atomic_write(paths["rejects"], _jsonl(self.rejects))
        _atomic_write(paths["stats"], json.dumps(self.stats, ensure_ascii=False, indent=2) + "\n")
        return paths


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _atomic_write(path: Path, text: str) -> None:
    # A killed job must not leave a half-written split that the next rule would train on.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_params(paths, seed, val_fraction, test_fraction, max_chars, dedup) -> list[str]:
    if isinstance(paths, str | os.PathLike):
        raise ConfigError(f"prepare() takes a list of paths, got the single path {paths!r}; wrap it in [ ].")
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ConfigError("no raw files given; list at least one data file.")
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise ConfigError(f"raw data files listed more than once: {repeated}; list each once.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
            raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction + test_fraction must be below 1 to leave a train split, "
            f"got {val_fraction} + {test_fraction}."
        )
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars <= 0:
        raise ConfigError(f"max_chars must be a positive integer, got {max_chars!r}.")
    if not isinstance(dedup, bool):
        raise ConfigError(f"dedup must be true or false, got {dedup!r}.")
    return paths


@dataclass
class Screen:
    """The read-check-reject loop shared by prepare() and the preference preparation: each record is
    normalised, checked for length and duplicates, and either yielded or written down in `rejects` with
    its reason; `counts` of every file reconcile (read = kept + rejected)."""

    normalise: Callable[[object], dict]
    char_count: Callable[[dict], int]
    dedup_key: Callable[[dict], str]
    reject: type[Exception]  # the record-reject exception, with .reason and .detail
    max_chars: int
    dedup: bool
    measured: str  # what max_chars counts, for the reject's detail
    rejects: list[dict]
    first_seen: dict[str, str] = field(default_factory=dict)

    def records(self, path: str, items, counts: dict) -> Iterator[tuple[str, dict, str]]:
        """(source, record, dedup key) of each usable record of one file."""
        for item in items:
            counts["read"] += 1
            source = item.source(path)
            try:
                if item.reason:
                    raise self.reject(item.reason, item.detail)
                record = self.normalise(item.value)
                key = self.dedup_key(record)
                length = self.char_count(record)
                if length > self.max_chars:
                    detail = f"{length} characters in {self.measured} > max_chars {self.max_chars}"
                    raise self.reject("too_long", detail)
                if self.dedup and key in self.first_seen:
                    detail = f"same as {self.first_seen[key]} (ignoring case and whitespace)"
                    raise self.reject("duplicate", detail)
            except self.reject as r:
                counts["rejected"] += 1
                reject = {"file": path, "line": item.line, "row": item.row}
                self.rejects.append({**reject, "reason": r.reason, "detail": r.detail, "raw": item.raw})
                continue
            counts["kept"] += 1
            self.first_seen.setdefault(key, source)
            yield source, record, key


def prepare(
    paths: list[str],
    *,
    seed: int = 42,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_chars: int = 8000,
    dedup: bool = True,
) -> PrepareResult:
    """Read every file in order; see docs/data.md for what is kept, rejected or raised."""
    paths = _check_params(paths, seed, val_fraction, test_fraction, max_chars, dedup)
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    rejects: list[dict] = []
    files: dict[str, dict] = {}
    screen = Screen(
        normalise, char_count, dedup_key, RecordReject, max_chars, dedup, "system + messages", rejects
    )
    for path in paths:
        read = read_file(path)
        counts = {"read": 0, "kept": 0, "rejected": 0}
        for source, record, key in screen.records(path, read.items, counts):
            record_id = hashlib.sha256(key.encode()).hexdigest()[:16]
            split = assign_split(key, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
            splits[split].append({"id": record_id, **record, "source": source})
        files[path] = {**counts, "format": read.format, "ignored_columns": read.ignored_columns}
    stats = _stats(splits, rejects, files)
    stats["params"] = {
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "max_chars": max_chars,
        "dedup": dedup,
    }
    if not stats["kept"]:
        raise DataError(_nothing_kept(stats, rejects))
    return PrepareResult(splits, rejects, stats)


def _stats(splits: dict, rejects: list[dict], files: dict) -> dict:
    stats = {
        "read": sum(f["read"] for f in files.values()),
        "kept": sum(f["kept"] for f in files.values()),
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
        "splits": {name: len(records) for name, records in splits.items()},
        "files": files,
    }
    # Not `assert`: these must hold under `python -O` too; a failure is a bug in conch.
    problems = [p for p, f in files.items() if f["read"] != f["kept"] + f["rejected"]]
    if problems or stats["read"] != stats["kept"] + stats["rejected"]:
        raise RuntimeError(f"conch bug: read != kept + rejected for {problems or 'the total'}")
    if sum(stats["splits"].values()) != stats["kept"]:
        raise RuntimeError("conch bug: split sizes do not add up to the kept count")
    return stats


def _nothing_kept(stats: dict, rejects: list[dict]) -> str:
    # The rule fails before rejects.jsonl is written, so the message carries the evidence.
    examples = "; ".join(
        f"{r['file']}:{r['line'] if r['line'] is not None else 'row ' + str(r['row'])} {r['reason']} ({r['detail']})"
        for r in rejects[:3]
    )
    return (
        f"no usable records: all {stats['read']} records read were rejected "
        f"{stats['rejected_by_reason']}; e.g. {examples}. Fix the records (see docs/data.md for the reasons)."
    )
