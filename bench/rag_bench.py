"""RAG benchmark: index build throughput and query latency at 10,000 and 100,000 chunks.

    python bench/rag_bench.py                      # sizes 10000 100000, writes bench/results/rag_bench.json
    python bench/rag_bench.py --sizes 2000 --queries 50

How the synthetic knowledge base is made (seeded, so runs compare):
- Texts: each chunk is 60-100 words drawn from the example knowledge base's own vocabulary (kb/docs) with its
  word frequencies, plus three "topic" words unique to a group of ~20 chunks, so BM25 has realistic common
  words and rare ones; one chunk in ten is Chinese, drawn from the Chinese documents' jieba words.
- Vectors: all-MiniLM-L6-v2 embeds 256 real synthetic chunks; every chunk's vector is one of those plus
  Gaussian noise (sigma 0.05 per dimension, renormalised). Embedding 100,000 chunks on 2 CPU cores would take
  hours, and the search cost depends on the count and dimension, not on the values. The embedding rate is
  measured separately on the 256 real chunks and reported as its own row.
- Queries: the question set (kb/questions.jsonl) plus random 4-8 word phrases from the same vocabulary.

Build = BM25 (tokenise + sparse matrix) + FAISS add + writing the index folder, embeddings excluded.
Query latency = `Retriever.search` end to end (query embedding + FAISS + BM25 + fusion + threshold), with the
query embedding's share reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conch.rag.embed import Embedder  # noqa: E402
from conch.rag.index import RETRIEVAL_DEFAULTS, build_faiss, write_jsonl  # noqa: E402
from conch.rag.ingest import ingest  # noqa: E402
from conch.rag.keyword import BM25, tokenize  # noqa: E402
from conch.rag.retrieve import Retriever  # noqa: E402


def vocabularies() -> tuple[Counter, Counter]:
    en, zh = Counter(), Counter()
    for doc in ingest(REPO / "kb" / "docs")[0]:
        for block in doc["blocks"]:
            if doc["lang"] == "zh":
                zh.update(t for t in tokenize(block["text"]) if re.match(r"[\u4e00-\u9fff]", t))
            else:
                en.update(re.findall(r"[A-Za-z]+", block["text"].lower()))
    return en, zh


def synthetic_texts(n: int, en: Counter, zh: Counter, rng: random.Random) -> list[str]:
    en_words, en_weights = zip(*en.items(), strict=True)
    zh_words, zh_weights = zip(*zh.items(), strict=True)
    texts = []
    for i in range(n):
        topic = [f"topic{i // 20}x{j}" for j in range(3)]
        if i % 10 == 9:
            body = rng.choices(zh_words, zh_weights, k=rng.randint(40, 70))
            texts.append("".join(body) + " " + " ".join(topic))
        else:
            body = rng.choices(en_words, en_weights, k=rng.randint(60, 100))
            texts.append(" ".join(body[:30] + topic + body[30:]))
    return texts


def synthetic_vectors(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = base[rng.integers(0, len(base), n)] + rng.normal(0, 0.05, (n, base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def build(texts: list[str], vectors: np.ndarray, out: Path, embedder: Embedder, kind: str) -> float:
    import faiss

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    chunks = [
        {
            "chunk_id": f"s{i:07d}",
            "doc_id": f"d{i // 20}",
            "source": f"synthetic/{i // 20}.txt",
            "title": "synthetic",
            "heading_path": [],
            "page": None,
            "lang": "zh" if i % 10 == 9 else "en",
            "position": i % 20,
            "n_tokens": 0,
            "text": text,
        }
        for i, text in enumerate(texts)
    ]
    BM25.build(texts).save(out)
    vector_index, vector_index_meta = build_faiss(vectors, kind)
    faiss.write_index(vector_index, str(out / "vectors.faiss"))
    write_jsonl(out / "chunks.jsonl", chunks)
    meta = {
        "n_chunks": len(chunks),
        "n_docs": len(chunks) // 20,
        "embedding_model": embedder.name,
        "dim": embedder.dim,
        "vector_index": vector_index_meta,
        "tokenizer": None,
        "max_context_tokens": None,
        "retrieval": RETRIEVAL_DEFAULTS,
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms_stats(name: str, values: list[float]) -> dict:
    return {
        f"{name}_p50_ms": round(statistics.median(values), 1),
        f"{name}_p95_ms": round(percentile(values, 95), 1),
    }


def time_queries(retriever: Retriever, queries: list[str]) -> dict:
    """End-to-end search latency, its query-embedding share, the index-only latency (embedding precomputed),
    and for an approximate index the share of the exact 50 nearest vectors it finds."""
    for q in queries[:10]:
        retriever.search(q)  # warm-up: page in the index, jieba's dictionary, torch kernels
    vectors, embed, total, index_only = {}, [], [], []
    for q in queries:
        t0 = time.perf_counter()
        vectors[q] = retriever._encode_query(q)
        embed.append((time.perf_counter() - t0) * 1000)
    for q in queries:
        t0 = time.perf_counter()
        retriever.search(q)
        total.append((time.perf_counter() - t0) * 1000)
    encode, retriever._encode_query = retriever._encode_query, vectors.__getitem__
    for q in queries:
        t0 = time.perf_counter()
        retriever.search(q)
        index_only.append((time.perf_counter() - t0) * 1000)
    retriever._encode_query = encode
    found = []
    for q in queries:
        exact = set(np.argpartition(-(retriever.matrix @ vectors[q][0]), 50)[:50].tolist())
        approx = set(retriever.index.vectors.search(vectors[q], 50)[1][0].tolist())
        found.append(len(exact & approx) / 50)
    return {
        "vector_index": retriever.index.meta["vector_index"]["type"],
        **ms_stats("query", total),
        **ms_stats("search_only", index_only),
        **ms_stats("query_embedding", embed),
        "vector_recall_at_50": round(statistics.mean(found), 3),
        "queries": len(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--vector-index", nargs="+", default=["auto"], choices=["auto", "flat", "ivf"])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "rag_bench.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = random.Random(0)
    en, zh = vocabularies()
    embedder = Embedder("all-MiniLM-L6-v2")

    sample = synthetic_texts(256, en, zh, rng)
    embedder.encode(sample[:8])  # warm-up
    started = time.perf_counter()
    base = embedder.encode(sample)
    embed_rate = len(sample) / (time.perf_counter() - started)
    questions = [
        json.loads(line)["question"] for line in (REPO / "kb/questions.jsonl").read_text().splitlines()
    ]
    en_words = list(en)
    queries = questions + [" ".join(rng.choices(en_words, k=rng.randint(4, 8))) for _ in range(args.queries)]
    queries = queries[: args.queries]

    rows = []
    for size in args.sizes:
        texts = synthetic_texts(size, en, zh, random.Random(size))
        vectors = synthetic_vectors(base, size, seed=size)
        for kind in args.vector_index:
            with tempfile.TemporaryDirectory() as tmp:
                build_s = build(texts, vectors, Path(tmp) / "index", embedder, kind)
                retriever = Retriever(Path(tmp) / "index", embedder=embedder)
                rows.append(
                    {
                        "chunks": size,
                        "build_seconds": round(build_s, 2),
                        "build_chunks_per_s": round(size / build_s),
                        **time_queries(retriever, queries),
                    }
                )
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "embedding_chunks_per_s": round(embed_rate, 1),
        "embedding_model": embedder.name,
        "load_average_at_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nembedding (all-MiniLM-L6-v2, CPU): {embed_rate:.1f} chunks/s\n")
    print(
        "| chunks | vector index | build (s) | build chunks/s | query p50 / p95 (ms) | search only p50 / p95 (ms) "
        "| query embedding p50 / p95 (ms) | vector recall@50 |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['chunks']:,} | {r['vector_index']} | {r['build_seconds']} | {r['build_chunks_per_s']:,} | "
            f"{r['query_p50_ms']} / {r['query_p95_ms']} | {r['search_only_p50_ms']} / {r['search_only_p95_ms']} | "
            f"{r['query_embedding_p50_ms']} / {r['query_embedding_p95_ms']} | {r['vector_recall_at_50']} |"
        )


if __name__ == "__main__":
    main()
