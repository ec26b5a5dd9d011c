"""Documents under a folder -> normalised documents with source metadata, and a stats record that reconciles.

Every file found is either ingested or skipped with a reason code and a detail naming what is wrong; the
stats say `found == ingested + skipped`, so nothing disappears silently.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from conch.rag.parsers import (
    PARSERS,
    Block,
    ParseError,
    parse_html,
    parse_markdown,
    parse_pdf,
    parse_qa,
    parse_text,
)

SKIP_REASONS = {
    "empty": "the file has no text",
    "binary": "binary content in a file with a text extension",
    "not_utf8": "text files must be UTF-8",
    "parse_error": "the file cannot be parsed as its extension says",
    "no_text": "parsed, but holds no text (e.g. a PDF of scanned images)",
    "duplicate": "same text as a document already ingested",
    "unsupported_type": "no parser for this extension",
}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def discover(root: str | Path) -> list[Path]:
    """Every file under `root`, sorted, so the first of two duplicates is always the same one."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"rag.docs: {root} is not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file())


def _decode(data: bytes) -> str:
    if not data.strip():
        raise ParseError("empty", "0 bytes" if not data else "only whitespace")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ParseError("binary", f"NUL byte at offset {nul}; this does not look like a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ParseError(
            "not_utf8", f"invalid byte 0x{data[err.start]:02x} at offset {err.start}; save the file as UTF-8"
        ) from None
    if not text.strip():
        raise ParseError("empty", "only whitespace")
    return text


def parse_file(path: Path) -> tuple[str, str | None, list[Block]]:
    """(format, title, blocks) for one file, or ParseError."""
    fmt = PARSERS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(PARSERS))
        raise ParseError(
            "unsupported_type",
            f"no parser for {path.suffix or 'files without an extension'!r} (supported: {supported})",
        )
    data = path.read_bytes()
    if fmt == "pdf":
        if not data.strip():
            raise ParseError("empty", "0 bytes")
        title, blocks = parse_pdf(path)
    else:
        text = _decode(data)
        parse = {"markdown": parse_markdown, "text": parse_text, "html": parse_html}.get(fmt)
        title, blocks = parse(text) if parse else parse_qa(text, path.suffix.lower())
    if not blocks:
        raise ParseError("no_text", f"no text left after parsing the {fmt} structure")
    return fmt, title, blocks


def content_hash(blocks: list[Block]) -> str:
    """Over whitespace-normalised text only, so a copy in another folder or format is caught as a duplicate."""
    text = " ".join(re.sub(r"\s+", " ", b.text).strip() for b in blocks)
    return hashlib.sha256(text.encode()).hexdigest()


def language(blocks: list[Block]) -> str:
    text = "".join(b.text for b in blocks)
    return "zh" if len(_CJK.findall(text)) > 0.2 * max(len(re.sub(r"\s", "", text)), 1) else "en"


def ingest(root: str | Path) -> tuple[list[dict], dict]:
    """(documents, stats). A document: doc_id, source (path under root), title, format, lang, sha256, blocks."""
    root = Path(root)
    docs, skipped, seen = [], [], {}
    files = discover(root)
    for path in files:
        source = path.relative_to(root).as_posix()
        try:
            fmt, title, blocks = parse_file(path)
            digest = content_hash(blocks)
            if digest in seen:
                raise ParseError("duplicate", f"same text as {seen[digest]}")
        except ParseError as err:
            skipped.append({"file": source, "reason": err.reason, "detail": err.detail})
            continue
        except OSError as err:
            skipped.append(
                {"file": source, "reason": "parse_error", "detail": f"cannot read: {err.strerror}"}
            )
            continue
        seen[digest] = source
        docs.append(
            {
                "doc_id": hashlib.sha256(source.encode()).hexdigest()[:12],
                "source": source,
                "title": title or path.stem.replace("_", " ").replace("-", " "),
                "format": fmt,
                "lang": language(blocks),
                "sha256": digest,
                "blocks": [asdict(b) for b in blocks],
            }
        )
    stats = {
        "root": str(root),
        "found": len(files),
        "ingested": len(docs),
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "ingested_by_format": dict(sorted(Counter(d["format"] for d in docs).items())),
        "ingested_by_lang": dict(sorted(Counter(d["lang"] for d in docs).items())),
        "skipped_files": skipped,
        "reasons": {r: SKIP_REASONS[r] for r in sorted({s["reason"] for s in skipped})},
    }
    assert stats["found"] == stats["ingested"] + stats["skipped"], "ingest lost a file"
    return docs, stats
