"""Rule rag_chunk: normalised documents -> structure-aware chunks counted in the base model's tokens
(results/rag/chunks.jsonl)."""

from conch.jobs.files import read_jsonl, write_jsonl
from conch.model.hub import base_model_path
from conch.rag.chunk import Chunker, load_tokenizer


def run(input, output, params, log):
    chunker = Chunker(load_tokenizer(base_model_path(input.base)), params.chunk_tokens, params.overlap)
    docs = read_jsonl(input.docs)
    chunks = [chunk for doc in docs for chunk in chunker.chunk_document(doc)]
    write_jsonl(output.chunks, chunks)
    with open(log, "w", encoding="utf-8") as fh:
        sizes = sorted(c["n_tokens"] for c in chunks)
        fh.write(
            f"{len(docs)} document(s) -> {len(chunks)} chunk(s); tokens per chunk min {sizes[0]}, "
            f"median {sizes[len(sizes) // 2]}, max {sizes[-1]} (limit {params.chunk_tokens}, "
            f"overlap {params.overlap})\n"
        )
