"""Hybrid retrieval: vector (FAISS) and keyword (BM25) candidates, fused, thresholded, cut to top-k, reranked.

Every hit carries its hybrid `similarity` = w * vector cosine + (1 - w) * keyword similarity (both on absolute
scales, see conch.rag.keyword), and the similarity threshold applies to that number whatever the ranking:
`fusion: weighted` ranks by it, `fusion: rrf` by reciprocal-rank fusion of the two candidate lists
(sum of 1 / (rrf_k + rank)), which ignores score scales altogether. With `reranker` set, the candidates that
pass the threshold are reordered by a cross-encoder before the top-k cut.
"""

from __future__ import annotations

import faiss
import numpy as np

from conch.rag.chunk import context_text
from conch.rag.embed import Embedder, resolve_model
from conch.rag.index import Index

SETTING_KEYS = ("fusion", "vector_weight", "rrf_k", "similarity_threshold", "top_k", "candidates", "reranker")


class Retriever:
    def __init__(self, index: Index | str, embedder: Embedder | None = None, **overrides):
        self.index = index if isinstance(index, Index) else Index(index)
        unknown = set(overrides) - set(SETTING_KEYS)
        if unknown:
            raise ValueError(
                f"unknown retrieval setting(s) {sorted(unknown)}; known: {', '.join(SETTING_KEYS)}"
            )
        self.settings = {**self.index.meta["retrieval"], **overrides}
        if self.settings["fusion"] not in ("weighted", "rrf"):
            raise ValueError(f"rag.fusion: {self.settings['fusion']!r}; use 'weighted' or 'rrf'")
        self.embedder = embedder or Embedder(self.index.meta["embedding_model"])
        if self.embedder.name != self.index.meta["embedding_model"]:
            raise ValueError(
                f"index was embedded with {self.index.meta['embedding_model']!r}, not {self.embedder.name!r}"
            )
        n = self.index.vectors.ntotal
        self.matrix = (
            self.index.vectors.reconstruct_n(0, n) if n else np.zeros((0, self.embedder.dim), np.float32)
        )
        self.reranker = None
        if self.settings.get("reranker"):
            from sentence_transformers import CrossEncoder

            self.reranker = CrossEncoder(
                resolve_model(self.settings["reranker"]), device=str(self.embedder.model.device)
            )

    def _encode_query(self, question: str):
        """One short text gains nothing from several threads, and on a busy CPU the threads wait on each
        other: measured here, 2 threads took 1.7 s where 1 took 0.13 s. Torch's setting is restored after."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.embedder.encode([question])
        finally:
            torch.set_num_threads(threads)

    def _candidates(self, question: str, n: int):
        query = self._encode_query(question)
        k = min(n, self.index.vectors.ntotal)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: OpenMP threads spinning on a busy CPU cost 5x here
        try:
            sims, ids = self.index.vectors.search(query, k)
        finally:
            faiss.omp_set_num_threads(threads)
        vector_ids = [int(i) for i in ids[0] if i >= 0]
        bm25 = self.index.bm25
        terms = bm25.query_terms(question)
        scores = bm25.scores(terms)
        nonzero = np.flatnonzero(scores)
        if len(nonzero) > n:
            nonzero = nonzero[np.argpartition(-scores[nonzero], n - 1)[:n]]
        keyword_ids = sorted(nonzero.tolist(), key=lambda i: (-scores[i], i))
        return query[0], vector_ids, keyword_ids, scores, bm25.max_score(terms)

    def search(self, question: str, top_k: int | None = None, threshold: float | None = None) -> list[dict]:
        """Ranked hits: the chunk's metadata and text with rank, score, similarity and its two parts."""
        s = self.settings
        top_k = s["top_k"] if top_k is None else top_k
        threshold = s["similarity_threshold"] if threshold is None else threshold
        if not question.strip() or self.index.vectors.ntotal == 0:
            return []
        query, vector_ids, keyword_ids, bm25_scores, bm25_max = self._candidates(question, s["candidates"])
        ids = list(dict.fromkeys(vector_ids + keyword_ids))
        vector_sim = self.matrix[ids] @ query
        keyword_sim = np.minimum(bm25_scores[ids] / bm25_max, 1.0) if bm25_max > 0 else np.zeros(len(ids))
        w = s["vector_weight"]
        similarity = w * vector_sim + (1 - w) * keyword_sim
        if s["fusion"] == "rrf":
            vector_rank = {i: r for r, i in enumerate(vector_ids, start=1)}
            keyword_rank = {i: r for r, i in enumerate(keyword_ids, start=1)}
            score = [
                sum(1 / (s["rrf_k"] + ranks[i]) for ranks in (vector_rank, keyword_rank) if i in ranks)
                for i in ids
            ]
        else:
            score = similarity.tolist()
        hits = [
            {
                "row": i,
                "score": float(sc),
                "similarity": float(sim),
                "vector_similarity": float(v),
                "keyword_similarity": float(kw),
            }
            for i, sc, sim, v, kw in zip(ids, score, similarity, vector_sim, keyword_sim, strict=True)
            if sim >= threshold
        ]
        hits.sort(key=lambda h: (-h["score"], h["row"]))
        if self.reranker and hits:
            pairs = [(question, context_text(self.index.chunks[h["row"]])) for h in hits]
            for hit, rerank in zip(hits, self.reranker.predict(pairs, show_progress_bar=False), strict=True):
                hit["rerank_score"] = hit["score"] = float(rerank)
            hits.sort(key=lambda h: (-h["score"], h["row"]))
        out = []
        for rank, hit in enumerate(hits[:top_k], start=1):
            chunk = self.index.chunks[hit.pop("row")]
            out.append({"rank": rank, **hit, **chunk})
        return out
