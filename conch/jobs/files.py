"""Files a job writes whole or not at all, and JSONL: one implementation for every stage and script.

A killed job must not leave a half-written file that the next rule would take for a finished one, so
writes go to a temporary file beside the target and replace it in one step. Standard library only: the
evaluation, RAG and serving code read JSONL through this module without pulling in the data preparation
(conch.data re-exports it for the data pipeline). Kept out of conch.data, whose import loads pandas.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from conch.errors import DataError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A text file to write that appears at `path` only when the block ends without an error."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, value) -> Path:
    return atomic_write(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable) -> Path:
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def write_tsv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Rows side by side for reading in a spreadsheet: one header from the first row's keys, tab-separated."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def read_jsonl(path: str | os.PathLike) -> list:
    """Every value of a JSONL file, blank lines skipped; a line that does not parse names its place."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(
                        f"{path}:{number}: not valid JSON ({err.msg}, column {err.colno})"
                    ) from None
    return rows


def question_lines(path: str | os.PathLike) -> Iterator[tuple[str, int, dict]]:
    """(where, line number, record) of each record of a question set (JSONL, blank lines skipped), each a JSON
    object with a non-empty string `question`; anything else is a ValueError naming the file and line."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
        if not isinstance(q, dict) or not isinstance(q.get("question"), str) or not q["question"].strip():
            raise ValueError(f"{where}: needs a non-empty string field 'question'")
        yield where, number, q


def as_paths(files: str | os.PathLike | Iterable) -> list[str]:
    """A list of paths: a Snakemake input or param naming one file arrives as a plain string."""
    return [os.fspath(files)] if isinstance(files, str | os.PathLike) else [os.fspath(f) for f in files]
