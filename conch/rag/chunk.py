"""Structure-aware chunking, counted in the served model's tokens.

A chunk never crosses a heading or a page: blocks are grouped by (heading path, page) and packed paragraph by
paragraph up to `chunk_tokens`; a paragraph that does not fit alone is split at sentence ends, and a sentence
that does not fit alone at token boundaries. Consecutive chunks of one section share up to `overlap_tokens`
of whole trailing sentences, so an answer that straddles a boundary is whole in one of them.

A chunk's id hashes its source, title, heading path, page and text: an unchanged document keeps its ids
(and so its cached embeddings) whatever happens to other documents.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from collections import Counter
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])")
_CJK_EDGE = re.compile(r"[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]")


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


@dataclass
class Piece:
    text: str
    para_start: bool  # joined to the previous piece with a blank line rather than a space


def _join(pieces: list[Piece]) -> str:
    out = ""
    for piece in pieces:
        if not out:
            out = piece.text
        elif piece.para_start:
            out += "\n\n" + piece.text
        else:
            cjk = _CJK_EDGE.match(out[-1]) and _CJK_EDGE.match(piece.text[0])
            out += ("" if cjk else " ") + piece.text
    return out


class Chunker:
    def __init__(self, tokenizer, chunk_tokens: int, overlap_tokens: int):
        if chunk_tokens < 16:
            raise ValueError(f"rag.chunk_tokens: {chunk_tokens} is too small to hold a sentence; use >= 16")
        if not 0 <= overlap_tokens < chunk_tokens // 2:
            raise ValueError(
                f"rag.chunk_overlap: {overlap_tokens} must be >= 0 and under half of "
                f"rag.chunk_tokens ({chunk_tokens})"
            )
        self.tokenizer, self.size, self.overlap = tokenizer, chunk_tokens, overlap_tokens

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _hard_split(self, text: str) -> list[str]:
        """A sentence too long for one chunk: cut into token windows a little under size (re-tokenising a
        cut piece can merge differently at its edges), each moved back to the last space or comma in its
        second half so that words stay whole."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = [start for start, _ in enc["offset_mapping"]]
        step = max(self.size - 4, 1)
        pieces, begin = [], 0
        while begin < len(text):
            first = bisect.bisect_left(starts, begin)
            end = starts[first + step] if first + step < len(starts) else len(text)
            if end < len(text):
                cut = max(
                    text.rfind(" ", begin, end),
                    text.rfind("，", begin, end) + 1,
                    text.rfind(",", begin, end) + 1,
                )
                if cut > begin + (end - begin) // 2:
                    end = cut
            piece = text[begin:end].strip()
            if piece:
                pieces.append(piece)
            begin = end
        return pieces

    def _pieces(self, paragraph: str) -> list[Piece]:
        if self.count(paragraph) <= self.size:
            return [Piece(paragraph, True)]
        out = []
        for sentence in sentences(paragraph):
            parts = [sentence] if self.count(sentence) <= self.size else self._hard_split(sentence)
            out += [Piece(p, False) for p in parts]
        out[0].para_start = True
        return out

    def _overlap_tail(self, pieces: list[Piece]) -> list[Piece]:
        if not self.overlap:
            return []
        tail: list[Piece] = []
        for piece in reversed(pieces):
            for sentence in reversed(sentences(piece.text)):
                candidate = [Piece(sentence, False), *tail]
                if self.count(_join(candidate)) > self.overlap:
                    return tail
                tail = candidate
        return tail

    def pack(self, paragraphs: list[str]) -> list[tuple[str, int]]:
        """(text, n_tokens) chunks for one section's paragraphs."""
        chunks, current = [], []
        for piece in itertools.chain.from_iterable(self._pieces(p) for p in paragraphs):
            if current and self.count(_join([*current, piece])) > self.size:
                chunks.append(_join(current))
                current = self._overlap_tail(current)
                if current and self.count(_join([*current, piece])) > self.size:
                    current = []
            current.append(piece)
        if current:
            chunks.append(_join(current))
        return [(text, self.count(text)) for text in chunks]

    def chunk_document(self, doc: dict) -> list[dict]:
        out, seen = [], Counter()
        sections = itertools.groupby(doc["blocks"], key=lambda b: (tuple(b["heading_path"]), b.get("page")))
        for (heading_path, page), blocks in sections:
            for text, n_tokens in self.pack([b["text"] for b in blocks]):
                key = "\x00".join([doc["source"], doc["title"], " / ".join(heading_path), str(page), text])
                seen[key] += 1  # the same text twice in one section still gets two ids
                out.append(
                    {
                        "chunk_id": hashlib.sha256(f"{key}\x00{seen[key]}".encode()).hexdigest()[:16],
                        "doc_id": doc["doc_id"],
                        "source": doc["source"],
                        "title": doc["title"],
                        "heading_path": list(heading_path),
                        "page": page,
                        "lang": doc["lang"],
                        "position": len(out),
                        "n_tokens": n_tokens,
                        "text": text,
                    }
                )
        return out


def context_text(chunk: dict) -> str:
    """What is embedded and keyword-indexed: the chunk with its title and headings, which often carry the
    words a question uses ("What is X?" against a section headed "X")."""
    heading = [h for h in chunk["heading_path"] if h != chunk["title"]]
    return " › ".join([chunk["title"], *heading]) + "\n" + chunk["text"]
