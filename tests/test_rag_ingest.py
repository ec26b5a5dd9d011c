"""Ingest and chunking: every format parsed with its structure, every bad input skipped with its reason, and
chunks that respect size, headings and overlap and keep their ids when other documents change."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from conftest import REPO

from conch.rag.chunk import Chunker
from conch.rag.ingest import ingest
from conch.rag.keyword import BM25, tokenize

KB = REPO / "kb" / "docs"
_spec = importlib.util.spec_from_file_location("make_pdf", REPO / "kb" / "make_pdf.py")
make_pdf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_pdf)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE like the scratch base model's, trained on the example knowledge base."""
    from conch.model.scratch import train_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in KB.rglob("*.md")]
    return train_tokenizer(texts, 600)


def test_the_example_knowledge_base_ingests_whole():
    docs, stats = ingest(KB)
    assert stats["found"] == stats["ingested"] == len(docs) >= 30 and stats["skipped"] == 0
    assert set(stats["ingested_by_format"]) == {"markdown", "text", "html", "pdf", "qa"}
    assert stats["ingested_by_lang"]["zh"] >= 8 and stats["ingested_by_lang"]["en"] >= 20
    questions = [json.loads(line) for line in (REPO / "kb/questions.jsonl").read_text().splitlines()]
    sources = {d["source"] for d in docs}
    for q in questions:
        assert set(q["sources"]) <= sources, q  # the question set names real documents


def test_formats_keep_their_structure(tmp_path):
    (tmp_path / "guide.md").write_text(
        "# Guide\n\nIntro para.\n\n## Setup\n\nStep one.\n\n```\n# not a heading\n\nstill code\n```\n\n"
        "### Deep\n\nDeep text.\n\n## Use\n\nUse it.\n"
    )
    (tmp_path / "page.html").write_text(
        "<html><head><title>Page</title><script>var x = 'hidden';</script></head><body><h1>Top</h1>"
        "<p>First &amp; foremost.</p><h2>Part</h2><ul><li>item one</li><li>item two</li></ul></body></html>"
    )
    (tmp_path / "qa.jsonl").write_text(
        json.dumps({"question": "What?", "answer": "That."})
        + "\n"
        + json.dumps({"q": "Why?", "a": "Because."})
    )
    make_pdf.write_pdf(tmp_path / "two.pdf", [["Page one text."], ["Page two text."]], title="Two Pages")
    docs = {d["source"]: d for d in ingest(tmp_path)[0]}

    md = docs["guide.md"]
    assert md["title"] == "Guide"
    paths = [(b["heading_path"], b["text"]) for b in md["blocks"]]
    assert (["Guide", "Setup"], "```\n# not a heading\n\nstill code\n```") in paths
    assert (["Guide", "Setup", "Deep"], "Deep text.") in paths
    assert (["Guide", "Use"], "Use it.") in paths  # a shallower heading pops the deeper ones

    html = docs["page.html"]
    assert html["title"] == "Page" and "hidden" not in json.dumps(html)
    assert [(b["heading_path"], b["text"]) for b in html["blocks"]] == [
        (["Top"], "First & foremost."),
        (["Top", "Part"], "item one"),
        (["Top", "Part"], "item two"),
    ]
    assert [b["text"] for b in docs["qa.jsonl"]["blocks"]] == ["Q: What?\nA: That.", "Q: Why?\nA: Because."]
    pdf = docs["two.pdf"]
    assert pdf["title"] == "Two Pages"
    assert [(b["page"], b["text"]) for b in pdf["blocks"]] == [(1, "Page one text."), (2, "Page two text.")]


def test_bad_inputs_are_skipped_with_reasons_and_counts_reconcile(tmp_path):
    good = "# Real\n\nThe conch says maybe someday.\n"
    (tmp_path / "real.md").write_text(good)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "real-again.md").write_text(
        good.replace("\n\n", "\n\n\n")
    )  # same text, other spacing
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text("  \n\n ")
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    make_pdf.write_pdf(tmp_path / "scan.pdf", [[], []])
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "bad.jsonl").write_text('{"question": "ok?", "answer": "ok"}\n{"question": "no answer"\n')
    (tmp_path / "fields.json").write_text('[{"title": "no q/a here"}]')
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04")

    docs, stats = ingest(tmp_path)
    assert [d["source"] for d in docs] == ["copy/real-again.md"]  # sorted: the first copy wins
    skipped = {s["file"]: (s["reason"], s["detail"]) for s in stats["skipped_files"]}
    assert skipped["real.md"] == ("duplicate", "same text as copy/real-again.md")
    assert skipped["empty.txt"] == ("empty", "0 bytes")
    assert skipped["blank.md"][0] == "empty"
    assert skipped["image.txt"][0] == "binary" and "NUL byte at offset 8" in skipped["image.txt"][1]
    assert skipped["latin1.txt"][0] == "not_utf8" and "0xe9 at offset 3" in skipped["latin1.txt"][1]
    assert skipped["scan.pdf"][0] == "no_text" and "2 page(s)" in skipped["scan.pdf"][1]
    assert skipped["broken.pdf"][0] == "parse_error" and "not a readable PDF" in skipped["broken.pdf"][1]
    assert skipped["bad.jsonl"] == ("parse_error", "line 2: invalid JSON (Expecting ',' delimiter)")
    assert skipped["fields.json"][0] == "parse_error" and "item 0" in skipped["fields.json"][1]
    assert skipped["sheet.xlsx"][0] == "unsupported_type" and "'.xlsx'" in skipped["sheet.xlsx"][1]
    assert stats["found"] == 11 == stats["ingested"] + stats["skipped"]
    assert sum(stats["skipped_by_reason"].values()) == stats["skipped"] == 10
    assert set(stats["reasons"]) == set(stats["skipped_by_reason"])


def test_chunks_respect_size_headings_and_overlap(tokenizer):
    sentence = "The conch answered question {} with no."
    long_section = " ".join(sentence.format(i) for i in range(40))
    doc = {
        "doc_id": "d1",
        "source": "a.md",
        "title": "A",
        "lang": "en",
        "blocks": [
            {"text": "Short intro.", "heading_path": ["A"], "page": None},
            {"text": long_section, "heading_path": ["A", "Long"], "page": None},
            {"text": "x" * 3000, "heading_path": ["A", "Unbroken"], "page": None},  # no sentence end at all
        ],
    }
    chunker = Chunker(tokenizer, 64, 24)
    chunks = chunker.chunk_document(doc)
    assert all(c["n_tokens"] <= 64 for c in chunks)
    assert all(chunker.count(c["text"]) == c["n_tokens"] for c in chunks)
    assert chunks[0]["text"] == "Short intro." and chunks[0]["heading_path"] == ["A"]
    long_chunks = [c for c in chunks if c["heading_path"] == ["A", "Long"]]
    assert len(long_chunks) >= 4
    for before, after in zip(long_chunks, long_chunks[1:], strict=False):
        last_sentence = before["text"].rsplit(". ", 1)[-1]
        assert after["text"].startswith(last_sentence), "consecutive chunks share a trailing sentence"
    rebuilt = " ".join(c["text"] for c in long_chunks)
    for i in range(40):
        assert sentence.format(i) in rebuilt, "no sentence is lost"
    unbroken = [c for c in chunks if c["heading_path"] == ["A", "Unbroken"]]
    assert len(unbroken) > 1 and "".join(c["text"] for c in unbroken).count("x") >= 3000 - len(unbroken) * 4
    assert len({c["chunk_id"] for c in chunks}) == len(chunks)


def test_chunk_ids_are_stable_and_change_with_content(tmp_path, tokenizer):
    kb = tmp_path / "kb"
    shutil.copytree(KB / "lore", kb)
    chunker = Chunker(tokenizer, 96, 12)

    def ids_by_source():
        out = {}
        for doc in ingest(kb)[0]:
            out[doc["source"]] = [c["chunk_id"] for c in chunker.chunk_document(doc)]
        return out

    before = ids_by_source()
    with (kb / "sandy.md").open("a", encoding="utf-8") as fh:
        fh.write("\n## Pets\n\nSandy once kept a pet worm in the treedome.\n")
    after = ids_by_source()
    assert after["sandy.md"][: len(before["sandy.md"])] == before["sandy.md"]  # earlier sections unchanged
    assert len(after["sandy.md"]) == len(before["sandy.md"]) + 1
    assert {k: v for k, v in after.items() if k != "sandy.md"} == {
        k: v for k, v in before.items() if k != "sandy.md"
    }
    (kb / "patrick.txt").write_text((kb / "patrick.txt").read_text().replace("pink", "purple"))
    assert ids_by_source()["patrick.txt"] != before["patrick.txt"]


def test_keyword_index_segments_chinese_and_scores_on_an_absolute_scale():
    assert "海螺" in tokenize("神奇海螺说什么都不要") and "什么" not in tokenize("神奇海螺说什么")
    assert tokenize("The Magic CONCH, 124 Conch Street") == ["magic", "conch", "124", "conch", "street"]
    bm25 = BM25.build(["神奇海螺的回答", "蟹堡王的秘方", "the magic conch speaks", "krabby patty formula"])
    terms = bm25.query_terms("神奇海螺")
    scores = bm25.scores(terms)
    assert scores.argmax() == 0 and scores[1] == scores[2] == scores[3] == 0
    # an unknown word lowers the ceiling-normalised score instead of being ignored
    assert bm25.max_score(bm25.query_terms("神奇海螺 zebra")) > bm25.max_score(terms)
