"""Rule rag_index: chunks -> results/rag/index (FAISS + BM25 + chunk store + the served model's tokenizer),
embeddings cached."""

import json
from pathlib import Path

from conch.jobs.files import read_jsonl
from conch.model.hub import base_model_path
from conch.rag.chunk import load_tokenizer
from conch.rag.embed import Embedder, EmbeddingCache
from conch.rag.index import build_index


def run(input, output, params, log):
    out = Path(output.index)
    model_dir = base_model_path(input.base)
    # The index carries the tokenizer it was chunked with, so a server can count prompt tokens from it alone.
    tokenizer = load_tokenizer(model_dir)
    tokenizer.save_pretrained(out / "tokenizer")
    model_config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    context = model_config.get("max_position_embeddings") or tokenizer.model_max_length

    cache = EmbeddingCache(params.cache)
    meta = build_index(
        read_jsonl(input.chunks),
        out,
        embedder=Embedder(params.embedding_model, batch_size=params.batch_size),
        cache=cache,
        tokenizer_path="tokenizer",
        max_context_tokens=context,
        retrieval=dict(params.retrieval),
        vector_index=params.vector_index,
    )
    cache.close()
    with open(log, "w", encoding="utf-8") as fh:
        build = meta["build"]
        fh.write(
            f"{meta['n_chunks']} chunk(s) from {meta['n_docs']} document(s); embedded {build['embedded']} "
            f"with {meta['embedding_model']}, {build['from_cache']} from the cache {params.cache}\n"
        )
