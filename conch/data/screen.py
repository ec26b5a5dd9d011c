"""The read-screen-count loop shared by SFT preparation (conch.data.pipeline) and preference preparation
(conch.preference.prepare): every record of every file is normalised, checked for length and duplicates,
and either kept or written down as a reject with its reason; the counts of every file reconcile."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

from conch.data.readers import read_file
from conch.data.split import assign_split
from conch.errors import ConfigError, DataError


def raw_paths(paths) -> list[str]:
    """The raw files as a list of strings, or a ConfigError saying what is wrong with the list."""
    if isinstance(paths, str | os.PathLike):
        raise ConfigError(f"prepare() takes a list of paths, got the single path {paths!r}; wrap it in [ ].")
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ConfigError("no raw files given; list at least one data file.")
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise ConfigError(f"raw data files listed more than once: {repeated}; list each once.")
    return paths


@dataclass(frozen=True)
class Settings:
    """The knobs of a preparation (config `data`, `preference.data`), checked; its stats record them as
    `params`. The defaults are config/schema.yaml's for `data` (tests/test_config.py checks they agree)."""

    seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_chars: int = 8000
    dedup: bool = True

    def __post_init__(self):
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}.")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must be below 1 to leave a train split, "
                f"got {self.val_fraction} + {self.test_fraction}."
            )
        if not isinstance(self.max_chars, int) or isinstance(self.max_chars, bool) or self.max_chars <= 0:
            raise ConfigError(f"max_chars must be a positive integer, got {self.max_chars!r}.")
        if not isinstance(self.dedup, bool):
            raise ConfigError(f"dedup must be true or false, got {self.dedup!r}.")

    def split(self, key: str) -> str:
        return assign_split(
            key, seed=self.seed, val_fraction=self.val_fraction, test_fraction=self.test_fraction
        )

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def settings_of(params) -> dict:
    """The Settings of a rule's params (Snakemake's, or any object with those attributes), as keywords."""
    return {name: getattr(params, name) for name in Settings.names()}


@dataclass
class Screen:
    normalise: Callable[[object], dict]
    char_count: Callable[[dict], int]
    dedup_key: Callable[[dict], str]
    reject: type[Exception]  # the record-reject exception, with .reason and .detail
    settings: Settings
    measured: str  # what max_chars counts, for the reject's detail
    known_keys: frozenset[str] | None = None  # keys a record may carry; None: the reader's own list
    rejects: list[dict] = field(default_factory=list)
    files: dict[str, dict] = field(default_factory=dict)  # per file: counts, format, ignored columns
    first_seen: dict[str, str] = field(default_factory=dict)

    def read(self, paths: list[str], *extra_counts: str) -> Iterator[tuple[str, dict, str, dict]]:
        """(source, record, dedup key, its file's counts) of each usable record of every file, in order."""
        for path in paths:
            read = read_file(path)
            counts = dict.fromkeys(("read", "kept", "rejected", *extra_counts), 0)
            for source, record, key in self.records(path, read.items, counts):
                yield source, record, key, counts
            ignored = read.ignored_columns
            if self.known_keys is not None:
                keys = {str(k) for item in read.items if isinstance(item.value, dict) for k in item.value}
                ignored = sorted(keys - self.known_keys)
            self.files[path] = {**counts, "format": read.format, "ignored_columns": ignored}

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
                if length > self.settings.max_chars:
                    detail = f"{length} characters in {self.measured} > max_chars {self.settings.max_chars}"
                    raise self.reject("too_long", detail)
                if self.settings.dedup and key in self.first_seen:
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

    def totals(self, placed: int | None = None) -> dict:
        """read, kept, rejected and rejects by reason over every file: the start of a stats.json. `placed`:
        how many kept records the caller put into splits, which must be all of them."""
        # Not `assert`: these must hold under `python -O` too; a failure is a bug in conch.
        problems = [p for p, f in self.files.items() if f["read"] != f["kept"] + f["rejected"]]
        if problems or sum(f["rejected"] for f in self.files.values()) != len(self.rejects):
            raise RuntimeError(f"conch bug: read != kept + rejected for {problems or 'the total'}")
        kept = sum(f["kept"] for f in self.files.values())
        if placed is not None and placed != kept:
            raise RuntimeError("conch bug: split sizes do not add up to the kept count")
        return {
            "read": sum(f["read"] for f in self.files.values()),
            "kept": kept,
            "rejected": len(self.rejects),
            "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in self.rejects).items())),
        }

    def nothing_kept(self, what: str, advice: str) -> DataError:
        """The error when every record was rejected; it carries the evidence, as no rejects file is written."""
        stats = self.totals()
        examples = "; ".join(
            f"{r['file']}:{r['line'] if r['line'] is not None else 'row ' + str(r['row'])} {r['reason']} "
            f"({r['detail']})"
            for r in self.rejects[:3]
        )
        return DataError(
            f"no usable {what}: all {stats['read']} records read were rejected "
            f"{stats['rejected_by_reason']}; e.g. {examples}. {advice}"
        )
