"""One parser per document format: raw bytes/text -> (title, blocks). A block is a paragraph-like unit of text
with the heading path and page it came from; the chunker never merges blocks across headings or pages.

A parser raises ParseError with a reason a person can act on; `ingest` turns that into a skipped-file record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path


class ParseError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Block:
    text: str
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _heading_stack_push(stack: list[tuple[int, str]], level: int, name: str) -> None:
    while stack and stack[-1][0] >= level:
        stack.pop()
    stack.append((level, name))


def parse_markdown(text: str) -> tuple[str | None, list[Block]]:
    """ATX headings give the heading path; blank lines separate paragraphs; fenced code stays one block."""
    title, stack, blocks, para, in_fence = None, [], [], [], False

    def flush():
        body = "\n".join(para).strip()
        if body:
            blocks.append(Block(body, [name for _, name in stack]))
        para.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            para.append(line)
            continue
        heading = None if in_fence else _MD_HEADING.match(line)
        if heading:
            flush()
            level, name = len(heading[1]), heading[2].strip()
            title = title or (name if level == 1 else None)
            _heading_stack_push(stack, level, name)
        elif not in_fence and not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    return title, blocks


def parse_text(text: str) -> tuple[str | None, list[Block]]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text)]
    return None, [Block(p) for p in paragraphs if p]


class _HTMLBlocks(HTMLParser):
    BLOCK_TAGS = {
        "p",
        "div",
        "li",
        "pre",
        "blockquote",
        "td",
        "th",
        "tr",
        "section",
        "article",
        "table",
        "ul",
        "ol",
        "dd",
        "dt",
        "figcaption",
        "header",
        "footer",
        "main",
        "br",
        "hr",
        "body",
    }
    SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head"}
    HEADINGS = {f"h{i}": i for i in range(1, 7)}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.blocks: list[Block] = []
        self._stack: list[tuple[int, str]] = []
        self._buf: list[str] = []
        self._skip = 0
        self._in_title = False
        self._heading_level: int | None = None
        self._pre = 0

    def _flush(self) -> None:
        raw = "".join(self._buf)
        text = raw.strip("\n") if self._pre else re.sub(r"\s+", " ", raw).strip()
        self._buf.clear()
        if not text:
            return
        if self._heading_level is not None:
            _heading_stack_push(self._stack, self._heading_level, text)
            if self._heading_level == 1 and self.title is None:
                self.title = text
        else:
            self.blocks.append(Block(text, [name for _, name in self._stack]))

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP_TAGS:
            self._skip += 1
        elif tag in self.HEADINGS:
            self._flush()
            self._heading_level = self.HEADINGS[tag]
        elif tag in self.BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self._pre += 1

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in self.HEADINGS:
            self._flush()
            self._heading_level = None
        elif tag in self.BLOCK_TAGS:
            self._flush()
            if tag == "pre" and self._pre:
                self._pre -= 1

    def handle_data(self, data):
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif not self._skip:
            self._buf.append(data)


def parse_html(text: str) -> tuple[str | None, list[Block]]:
    parser = _HTMLBlocks()
    parser.feed(text)
    parser.close()
    parser._flush()
    return parser.title or None, parser.blocks


def parse_pdf(path: Path) -> tuple[str | None, list[Block]]:
    """Text per page (pypdf, pure Python); a PDF of scanned images has none and is reported, not indexed."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("parse_error", "PDF is encrypted with a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata or {}).get("/Title")
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as err:
        raise ParseError("parse_error", f"not a readable PDF ({type(err).__name__}: {err})") from None
    blocks = []
    for number, page_text in enumerate(pages, start=1):
        for para in re.split(r"\n\s*\n", page_text):
            para = re.sub(r"[ \t]+", " ", para).strip()
            if para:
                blocks.append(Block(para, [], number))
    if not blocks:
        raise ParseError(
            "no_text", f"PDF has {len(pages)} page(s) but no extractable text (scanned images? run OCR first)"
        )
    return (str(meta_title).strip() or None) if meta_title else None, blocks


QUESTION_KEYS = ("question", "q", "instruction", "prompt", "query")
ANSWER_KEYS = ("answer", "a", "output", "response")


def _qa_records(text: str, suffix: str) -> list[tuple[str, object]]:
    """(location, record) pairs; location names the line (JSONL) or the list index (JSON)."""
    if suffix == ".jsonl":
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ParseError("parse_error", f"line {number}: invalid JSON ({err.msg})") from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ParseError("parse_error", f"line {err.lineno}: invalid JSON ({err.msg})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise ParseError("parse_error", "expected a list of question/answer objects")
    return [(f"item {i}", record) for i, record in enumerate(data)]


def parse_qa(text: str, suffix: str) -> tuple[str | None, list[Block]]:
    """JSON/JSONL question-answer pairs: one block per pair, headed by its question so pairs never merge."""
    blocks = []
    for where, record in _qa_records(text, suffix):
        if not isinstance(record, dict):
            raise ParseError("parse_error", f"{where}: expected an object, got {type(record).__name__}")
        question = next((record[k] for k in QUESTION_KEYS if isinstance(record.get(k), str)), None)
        answer = next((record[k] for k in ANSWER_KEYS if isinstance(record.get(k), str)), None)
        if not (question and question.strip() and answer and answer.strip()):
            raise ParseError(
                "parse_error",
                f"{where}: needs a question ({'/'.join(QUESTION_KEYS)}) and an answer "
                f"({'/'.join(ANSWER_KEYS)}); found keys {sorted(record)}",
            )
        blocks.append(Block(f"Q: {question.strip()}\nA: {answer.strip()}", [question.strip()]))
    return None, blocks


PARSERS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".json": "qa",
    ".jsonl": "qa",
}
