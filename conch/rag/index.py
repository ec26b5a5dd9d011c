"""The index folder: everything a server needs to answer from the knowledge base, and nothing it must fetch.

vectors.faiss      FAISS inner-product index over unit vectors (cosine); row i is chunks.jsonl line i
bm25_*.npz/.npy/.json   keyword index (conch.rag.keyword)
chunks.jsonl       the chunk store: text and source metadata
meta.json          embedding model, tokenizer and context size of the served model, retrieval settings,
                   and build counts (chunks embedded now vs taken from the cache)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from conch.jobs.files import read_jsonl, write_jsonl
from conch.rag.chunk import context_text
from conch.rag.embed import Embedder, EmbeddingCache, embed_chunks
from conch.rag.keyword import BM25

RETRIEVAL_DEFAULTS = {
    "fusion": "weighted",  # or "rrf"
    "vector_weight": 0.5,
    "rrf_k": 60,
    "similarity_threshold": 0.45,
    "top_k": 4,
    "candidates": 50,
    "reranker": None,
}


# Below this many chunks the exact flat index is fast enough; above it an inverted-file index scans a few
# percent of the vectors (see docs/rag.md: 100,000 chunks take ~27 ms flat on a busy 2-core CPU, ~1 ms IVF).
IVF_MIN_CHUNKS = 20_000


def build_faiss(vectors: np.ndarray, kind: str = "auto"):
    """(index, description). `flat`: exact inner product. `ivf`: sqrt(n) k-means lists, nprobe lists per query."""
    import faiss

    n, dim = vectors.shape
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "auto":
        kind = "ivf" if n >= IVF_MIN_CHUNKS else "flat"
    if kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, {"type": "flat"}
    nlist = max(1, int(n**0.5))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).permutation(n)[: min(n, 64 * nlist)]
    index.train(vectors[sample])
    index.add(vectors)
    return index, {"type": "ivf", "nlist": nlist, "nprobe": max(8, nlist // 16)}


def build_index(
    chunks: list[dict],
    out_dir: str | Path,
    *,
    embedder: Embedder,
    cache: EmbeddingCache | None,
    tokenizer_path: str | None = None,
    max_context_tokens: int | None = None,
    retrieval: dict | None = None,
    vector_index: str = "auto",
) -> dict:
    """Write the index folder; return its meta (also in meta.json)."""
    import faiss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = [context_text(c) for c in chunks]
    started = time.perf_counter()
    vectors, counts = embed_chunks(embedder, cache, [c["chunk_id"] for c in chunks], texts)
    embedded_s = time.perf_counter() - started
    vector_index, vector_index_meta = build_faiss(vectors, vector_index)
    faiss.write_index(vector_index, str(out / "vectors.faiss"))
    BM25.build(texts).save(out)
    write_jsonl(out / "chunks.jsonl", chunks)
    meta = {
        "n_chunks": len(chunks),
        "n_docs": len({c["doc_id"] for c in chunks}),
        "embedding_model": embedder.name,
        "dim": embedder.dim,
        "vector_index": vector_index_meta,
        "tokenizer": tokenizer_path,
        "max_context_tokens": max_context_tokens,
        "retrieval": {**RETRIEVAL_DEFAULTS, **(retrieval or {})},
        "build": {
            **counts,
            "embed_seconds": round(embedded_s, 3),
            "index_seconds": round(time.perf_counter() - started - embedded_s, 3),
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


class Index:
    """A loaded index folder."""

    def __init__(self, directory: str | Path):
        import faiss

        self.directory = Path(directory)
        if not (self.directory / "meta.json").exists():
            raise FileNotFoundError(
                f"{self.directory} is not a conch RAG index (no meta.json); "
                "build one with `snakemake results/rag/index`"
            )
        self.meta = json.loads((self.directory / "meta.json").read_text(encoding="utf-8"))
        self.chunks = read_jsonl(self.directory / "chunks.jsonl")
        self.vectors = faiss.read_index(str(self.directory / "vectors.faiss"))
        described = self.meta.get("vector_index", {"type": "flat"})
        if described["type"] == "ivf":
            self.vectors.nprobe = described["nprobe"]
            self.vectors.make_direct_map()  # so that rows can be read back for exact similarities
        self.bm25 = BM25.load(self.directory)
        if not (self.vectors.ntotal == self.bm25.n_docs == len(self.chunks)):
            raise ValueError(
                f"{self.directory}: FAISS ({self.vectors.ntotal}), BM25 ({self.bm25.n_docs}) and "
                f"chunk store ({len(self.chunks)}) disagree; rebuild the index"
            )
