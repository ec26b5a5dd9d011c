"""Read raw files into positioned items; whole-file problems raise DataError.

Per-record problems that a reader can see (a JSONL line that does not parse or decode) come
back as items carrying a reject reason, so one bad line does not cost the whole file.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from conch.data.rejects import type_name
from conch.errors import DataError

FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
SUPPORTED_TEXT = (
    ".json (a JSON array of objects), .jsonl (one JSON object per line), .csv (header row) and .parquet"
)
KNOWN_KEYS = frozenset(
    {"instruction", "input", "output", "system", "history", "conversations", "messages", "tools"}
)
# Columns that hold lists; CSV can only carry them as JSON text.
JSON_CELLS = ("conversations", "messages", "history")
BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")


@dataclass
class Item:
    value: object = None
    line: int | None = None
    row: int | None = None
    raw: str = ""
    reason: str | None = None
    detail: str = ""

    def source(self, path: str) -> str:
        return f"{path}:{self.line}" if self.line is not None else f"{path}:row {self.row}"


@dataclass
class FileRead:
    format: str
    items: list[Item]
    ignored_columns: list[str] = field(default_factory=list)


def read_file(path: str) -> FileRead:
    suffix = Path(path).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; conch reads {SUPPORTED_TEXT}. "
            "Convert the file or give it the extension that matches its content."
        )
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: file not found; check the raw data paths in the config.")
    if not p.is_file():
        raise DataError(f"{path}: is not a regular file; list data files, not directories.")
    data = p.read_bytes()
    if not data.removeprefix(BOM).strip():
        what = "0 bytes" if not data else "only whitespace"
        raise DataError(f"{path}: file is empty ({what}); fill it or remove it from the input list.")
    read = {"json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]
    result = read(path, data)
    if not result.items:
        raise DataError(f"{path}: holds no records; fill it or remove it from the input list.")
    return result


def _decode(path: str, data: bytes) -> str:
    skip = len(BOM) if data.startswith(BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start
        line = data.count(b"\n", 0, offset) + 1
        raise DataError(
            f"{path}: not valid UTF-8 at byte offset {offset} (line {line}, byte 0x{data[offset]:02x}); "
            "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`."
        ) from None


def _json_error(path: str, text: str, e: json.JSONDecodeError) -> DataError:
    body = text.strip()
    hint = "fix the file there"
    if e.pos >= len(body) or (body.startswith("[") and not body.endswith("]")):
        hint = "the file ends before the closing ']', so it looks truncated; re-export or re-download it"
    elif e.msg == "Extra data":
        hint = "more than one top-level value; if it holds one object per line, name it .jsonl"
    what = e.msg.replace(" starting at", " starting there")
    return DataError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno} ({what}); {hint}.")


def _read_json(path: str, data: bytes) -> FileRead:
    text = _decode(path, data)
    start = _WS.match(text).end()
    if not text.startswith("[", start):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise _json_error(path, text, e) from None
        raise DataError(
            f"{path}: top level is a JSON {type_name(value)}, expected an array of record objects "
            "([{...}, {...}]); wrap the records in [ ] or, for one object per line, use .jsonl."
        )
    # Decode element by element (rather than json.loads) to know where each record starts.
    decoder = json.JSONDecoder()
    items: list[Item] = []
    pos, line, counted = _WS.match(text, start + 1).end(), 1, 0
    if text.startswith("]", pos):
        pos = _WS.match(text, pos + 1).end()
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise _json_error(path, text, e) from None
            line += text.count("\n", counted, pos)
            counted = pos
            items.append(Item(value, line=line, row=len(items) + 1, raw=text[pos:end][:500]))
            pos = _WS.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
                continue
            if text.startswith("]", pos):
                pos = _WS.match(text, pos + 1).end()
                break
            err = json.JSONDecodeError("Expecting ',' delimiter or ']'", text, pos)
            raise _json_error(path, text, err)
    if pos < len(text):
        raise _json_error(path, text, json.JSONDecodeError("Extra data", text, pos))
    if items and not any(isinstance(item.value, dict) for item in items):
        raise DataError(
            f"{path}: the array holds no objects (first element is a {type_name(items[0].value)}); "
            'each record must be an object such as {"instruction": ..., "output": ...}.'
        )
    return FileRead("json", items, _ignored_keys(items))


def _read_jsonl(path: str, data: bytes) -> FileRead:
    offset = len(BOM) if data.startswith(BOM) else 0
    items: list[Item] = []
    for number, chunk in enumerate(data[offset:].split(b"\n"), 1):
        start, offset = offset, offset + len(chunk) + 1
        chunk = chunk.rstrip(b"\r")
        if not chunk.strip():
            continue
        raw = chunk.decode("utf-8", errors="replace")[:500]
        if not items and chunk.lstrip().startswith(b"["):
            raise DataError(
                f"{path}: line {number} starts a JSON array; this looks like a .json file, "
                "so rename it to .json (a .jsonl file holds one object per line)."
            )
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            detail = (
                f"byte 0x{chunk[e.start]:02x} at column {e.start + 1} (file byte offset {start + e.start}) "
                "is not UTF-8"
            )
            items.append(Item(line=number, raw=raw, reason="invalid_utf8", detail=detail))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            items.append(
                Item(line=number, raw=raw, reason="malformed_json", detail=f"column {e.colno}: {e.msg}")
            )
            continue
        items.append(Item(value, line=number, raw=raw))
    return FileRead("jsonl", items, _ignored_keys(items))


def _ignored_keys(items: list[Item]) -> list[str]:
    keys = {str(k) for item in items if isinstance(item.value, dict) for k in item.value}
    return sorted(keys - KNOWN_KEYS)


def _read_csv(path: str, data: bytes) -> FileRead:
    import pandas as pd

    text = _decode(path, data)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise DataError(
            f"{path}: cannot parse as CSV: {e}; fields holding commas, quotes or newlines must be "
            "double-quoted, with inner quotes doubled."
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    # Short rows leave NaN even with keep_default_na=False; a missing cell is an empty one.
    rows = frame.fillna("").to_dict("records")
    return _tabular(path, "csv", list(frame.columns), rows)


def _read_parquet(path: str, data: bytes) -> FileRead:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as e:
        raise DataError(
            f"{path}: cannot read as Parquet: {e}; re-export it with pandas or pyarrow."
        ) from None
    # to_pylist keeps nested lists/dicts as plain Python, unlike pandas' numpy object arrays.
    rows = [{str(k).strip(): v for k, v in row.items()} for row in table.to_pylist()]
    return _tabular(path, "parquet", [str(c).strip() for c in table.column_names], rows)


def _tabular(path: str, fmt: str, columns: list[str], rows: list[dict]) -> FileRead:
    found = set(columns)
    # instruction + chosen + rejected: alpaca-style preference pairs (conch/preference reads them).
    alpaca = {"instruction", "output"} <= found or {"instruction", "chosen", "rejected"} <= found
    if not (alpaca or found & {"conversations", "messages"}):
        raise DataError(
            f"{path}: found columns {columns}; need instruction and output (alpaca) or a conversations "
            "or messages column (JSON list of turns); rename the header to match."
        )
    items = [_tabular_item(n, row) for n, row in enumerate(rows, 1)]
    return FileRead(fmt, items, sorted(found - KNOWN_KEYS))


def _tabular_item(number: int, row: dict) -> Item:
    raw = json.dumps(row, ensure_ascii=False, default=str)[:500]
    value = dict(row)
    for key in JSON_CELLS:
        cell = value.get(key)
        # Mixed-schema tables leave the other schema's cells blank; blank means absent.
        if cell is None or (isinstance(cell, str) and not cell.strip()):
            value.pop(key, None)
        elif isinstance(cell, str):
            try:
                value[key] = json.loads(cell)
            except json.JSONDecodeError as e:
                detail = f"column {key!r}, character {e.pos + 1}: {e.msg}"
                return Item(row=number, raw=raw, reason="malformed_json", detail=detail)
    return Item(value, row=number, raw=raw)
