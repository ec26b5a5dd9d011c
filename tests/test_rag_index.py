"""Embedding, indexing and hybrid retrieval on the example knowledge base, with the real offline MiniLM model."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from conftest import REPO

from conch.rag.chunk import Chunker
from conch.rag.embed import Embedder, EmbeddingCache
from conch.rag.index import Index, build_index
from conch.rag.ingest import ingest
from conch.rag.rag_eval import load_questions, retrieval_metrics, score_question
from conch.rag.retrieve import Retriever

pytestmark = pytest.mark.slow
KB = REPO / "kb" / "docs"
os.environ["HF_HUB_OFFLINE"] = "1"  # the default embedding model must need no network


@pytest.fixture(scope="module")
def chunker():
    from conch.model.scratch import train_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in KB.rglob("*.md")]
    return Chunker(train_tokenizer(texts, 600), 160, 20)


@pytest.fixture(scope="module")
def embedder():
    return Embedder("all-MiniLM-L6-v2")


def chunk_folder(folder, chunker):
    return [c for doc in ingest(folder)[0] for c in chunker.chunk_document(doc)]


@pytest.fixture(scope="module")
def kb_index(tmp_path_factory, chunker, embedder):
    work = tmp_path_factory.mktemp("rag_index")
    chunks = chunk_folder(KB, chunker)
    cache = EmbeddingCache(work / "cache.sqlite")
    meta = build_index(chunks, work / "index", embedder=embedder, cache=cache)
    cache.close()
    return work, meta, chunks


def test_index_files_agree_and_load(kb_index):
    work, meta, chunks = kb_index
    assert meta["n_chunks"] == len(chunks) and meta["build"]["embedded"] == len(chunks)
    index = Index(work / "index")
    assert index.vectors.ntotal == len(index.chunks) == index.bm25.n_docs == len(chunks)
    assert meta["retrieval"]["fusion"] == "weighted" and meta["dim"] == 384
    with pytest.raises(FileNotFoundError, match="not a conch RAG index"):
        Index(work)


def test_question_set_recall_and_no_answer(kb_index, embedder):
    retriever = Retriever(kb_index[0] / "index", embedder=embedder)
    rows = [
        score_question(q, retriever.search(q["question"]))
        for q in load_questions(REPO / "kb/questions.jsonl")
    ]
    metrics = retrieval_metrics(rows, retriever.settings["top_k"])
    assert metrics["recall_at_k"] >= 0.9 and metrics["mrr"] >= 0.8, metrics
    assert metrics["by_lang"]["zh"]["recall_at_k"] >= 0.8, metrics
    assert metrics["no_answer"] >= 0.8 and metrics["false_no_answer"] <= 0.1, metrics
    hits = retriever.search("What did the conch say when they asked what to eat in the Kelp Forest?")
    assert hits[0]["source"] == "lore/lost-in-the-kelp-forest.md" and "Nothing" in hits[0]["text"]
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert all(h["similarity"] >= retriever.settings["similarity_threshold"] for h in hits)
    assert retriever.search("北京今天的天气怎么样？") == []


def test_fusion_threshold_and_top_k(kb_index, embedder):
    index = Index(kb_index[0] / "index")
    question = "What instrument does Squidward play?"
    weighted = Retriever(index, embedder=embedder).search(question, top_k=5, threshold=-1)
    assert len(weighted) == 5 and weighted[0]["source"] == "lore/squidward.html"
    assert [h["score"] for h in weighted] == sorted((h["score"] for h in weighted), reverse=True)
    for h in weighted:  # the documented formula, from its two parts
        assert h["score"] == pytest.approx(
            0.5 * h["vector_similarity"] + 0.5 * h["keyword_similarity"], abs=1e-6
        )
    rrf = Retriever(index, embedder=embedder, fusion="rrf", rrf_k=60).search(question, top_k=5, threshold=-1)
    assert rrf[0]["source"] == "lore/squidward.html" and rrf[0]["score"] <= 2 / 61
    keyword_only = Retriever(index, embedder=embedder, vector_weight=0.0).search(question, threshold=-1)
    assert all(h["similarity"] == pytest.approx(h["keyword_similarity"]) for h in keyword_only)
    assert Retriever(index, embedder=embedder).search(question, threshold=0.99) == []
    with pytest.raises(ValueError, match="unknown retrieval setting"):
        Retriever(index, embedder=embedder, topk=3)


def test_changing_one_document_reembeds_only_its_chunks(kb_index, tmp_path, chunker, embedder):
    work, _, chunks = kb_index
    kb = tmp_path / "kb"
    shutil.copytree(KB, kb)
    shutil.copy2(work / "cache.sqlite", tmp_path / "cache.sqlite")
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    unchanged = build_index(chunk_folder(kb, chunker), tmp_path / "i1", embedder=embedder, cache=cache)
    assert unchanged["build"] == {**unchanged["build"], "embedded": 0, "from_cache": len(chunks)}

    doc = kb / "lore" / "goo-lagoon.txt"
    doc.write_text(doc.read_text() + "\nA new snack bar opened at Goo Lagoon selling kelp shakes.\n")
    new_chunks = chunk_folder(kb, chunker)
    changed = {c["chunk_id"] for c in new_chunks} - {c["chunk_id"] for c in chunks}
    assert changed and all(
        c["source"] == "lore/goo-lagoon.txt" for c in new_chunks if c["chunk_id"] in changed
    )
    meta = build_index(new_chunks, tmp_path / "i2", embedder=embedder, cache=cache)
    assert meta["build"]["embedded"] == len(changed) and meta["build"]["from_cache"] == len(new_chunks) - len(
        changed
    )
    # cached vectors are the model's vectors, not stale or zero rows
    fresh = Index(tmp_path / "i2").vectors.reconstruct_n(0, len(new_chunks))
    np.testing.assert_allclose(np.linalg.norm(fresh, axis=1), 1.0, atol=1e-4)
    hits = Retriever(tmp_path / "i2", embedder=embedder).search("Where can I buy a kelp shake?")
    assert hits and hits[0]["source"] == "lore/goo-lagoon.txt"


def test_cross_encoder_reranks_the_candidates(kb_index, embedder, tmp_path):
    """A tiny randomly initialised cross-encoder: the order must be its scores, whatever they mean."""
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from conch.rag.embed import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path / "reranker")
    tok.save_pretrained(tmp_path / "reranker")

    index = Index(kb_index[0] / "index")
    question = "Who is the lifeguard at Goo Lagoon?"
    plain = Retriever(index, embedder=embedder).search(question, top_k=50, threshold=0.2)
    reranked = Retriever(index, embedder=embedder, reranker=str(tmp_path / "reranker")).search(
        question, top_k=50, threshold=0.2
    )
    assert {h["chunk_id"] for h in reranked} == {h["chunk_id"] for h in plain}  # same candidates, new order
    scores = [h["rerank_score"] for h in reranked]
    assert scores == sorted(scores, reverse=True) and all(h["score"] == h["rerank_score"] for h in reranked)
    from conch.rag.chunk import context_text

    direct = CrossEncoder(str(tmp_path / "reranker")).predict([(question, context_text(reranked[0]))])
    assert float(direct[0]) == pytest.approx(scores[0], abs=1e-5)


def test_inverted_file_index_finds_the_same_sources(kb_index, tmp_path, embedder):
    """The approximate index used from 20,000 chunks: built, reloaded, and still finding the known sources."""
    work, _, chunks = kb_index
    cache = EmbeddingCache(work / "cache.sqlite")
    meta = build_index(chunks, tmp_path / "ivf", embedder=embedder, cache=cache, vector_index="ivf")
    assert meta["build"]["embedded"] == 0
    assert meta["vector_index"]["type"] == "ivf" and meta["vector_index"]["nlist"] == int(len(chunks) ** 0.5)
    retriever = Retriever(tmp_path / "ivf", embedder=embedder)
    assert retriever.index.vectors.nprobe == meta["vector_index"]["nprobe"]
    for question, source in [
        ("Who is the lifeguard at Goo Lagoon?", "lore/goo-lagoon.txt"),
        ("章鱼哥的房子是什么形状？", "lore_zh/章鱼哥.md"),
    ]:
        assert retriever.search(question)[0]["source"] == source
