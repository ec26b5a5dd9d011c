"""Normalised documents -> structure-aware chunks counted in the base model's tokens (results/rag/chunks.jsonl)."""

from conch.model.hub import base_model_path
from conch.rag.chunk import Chunker, load_tokenizer
from conch.workflow.files import read_jsonl, write_jsonl

p = snakemake.params
chunker = Chunker(load_tokenizer(base_model_path(snakemake.input.base)), p.chunk_tokens, p.overlap)
docs = read_jsonl(snakemake.input.docs)
chunks = [chunk for doc in docs for chunk in chunker.chunk_document(doc)]
write_jsonl(snakemake.output.chunks, chunks)
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    sizes = sorted(c["n_tokens"] for c in chunks)
    log.write(
        f"{len(docs)} document(s) -> {len(chunks)} chunk(s); tokens per chunk min {sizes[0]}, "
        f"median {sizes[len(sizes) // 2]}, max {sizes[-1]} (limit {p.chunk_tokens}, overlap {p.overlap})\n"
    )
