"""Seeded hash split: a record's split depends only on its content and the seed.

Hashing (rather than shuffling) means adding or removing other records never moves a
record between train/val/test, so evaluation numbers stay comparable as data grows.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def unit_interval(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def assign_split(key: str, *, seed: int, val_fraction: float, test_fraction: float) -> str:
    u = unit_interval(seed, key)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"
