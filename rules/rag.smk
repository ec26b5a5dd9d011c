# RAG branch: documents under rag.docs -> normalised documents -> chunks -> FAISS + BM25 index -> retrieval eval.
# The embedding cache (RAG_CACHE) is deliberately not an output: Snakemake deletes outputs before a rule
# reruns, and the cache is what lets a rerun after one changed document re-embed only that document's chunks.
from conch.rag import paths as rag_paths

RAG = config["rag"]
RAG_CACHE = "results/rag/cache/embeddings.sqlite"
RAG_DOCS = rag_paths.resolve(RAG["docs"], workflow.basedir)
RAG_QUESTIONS = rag_paths.resolve(RAG["questions"], workflow.basedir)


rule rag_ingest:
    input:
        docs=rag_paths.document_files(RAG_DOCS),
    output:
        docs="results/rag/docs.jsonl",
        stats="results/rag/ingest_stats.json",
    log:
        "logs/rag/ingest.log",
    benchmark:
        "benchmarks/rag/ingest.tsv"
    conda:
        "../envs/rag.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        root=lambda wc: RAG_DOCS,
    script:
        "../workflow_scripts/rag_ingest.py"


rule rag_chunk:
    input:
        docs=rules.rag_ingest.output.docs,
        base=BASE_MANIFEST,
    output:
        chunks="results/rag/chunks.jsonl",
    log:
        "logs/rag/chunk.log",
    benchmark:
        "benchmarks/rag/chunk.tsv"
    conda:
        "../envs/rag.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        chunk_tokens=RAG["chunk_tokens"],
        overlap=RAG["chunk_overlap"],
    script:
        "../workflow_scripts/rag_chunk.py"


rule rag_index:
    input:
        chunks=rules.rag_chunk.output.chunks,
        base=BASE_MANIFEST,
    output:
        index=directory("results/rag/index"),
    log:
        "logs/rag/index.log",
    benchmark:
        "benchmarks/rag/index.tsv"
    conda:
        "../envs/rag.yaml"
    threads: config["compute"]["threads"]
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        embedding_model=RAG["embedding_model"],
        batch_size=RAG["embedding_batch_size"],
        vector_index=RAG["vector_index"],
        cache=RAG_CACHE,
        retrieval={
            k: RAG[k]
            for k in (
                "fusion",
                "vector_weight",
                "rrf_k",
                "similarity_threshold",
                "top_k",
                "candidates",
                "reranker",
            )
        },
    script:
        "../workflow_scripts/rag_index.py"


rule rag_eval:
    input:
        index=rules.rag_index.output.index,
        questions=RAG_QUESTIONS,
        merged=lambda wc: tuned_model(wc.experiment),  # rules/train.smk
        base=BASE_MANIFEST,
    output:
        metrics="results/rag/eval/{experiment}/retrieval_metrics.json",
        results="results/rag/eval/{experiment}/questions.jsonl",
        report="results/rag/eval/{experiment}/report.md",
    log:
        "logs/rag/eval_{experiment}.log",
    benchmark:
        "benchmarks/rag/eval_{experiment}.tsv"
    conda:
        "../envs/rag.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(),
    params:
        answer_questions=RAG["eval"]["answer_questions"],
        max_new_tokens=RAG["eval"]["max_new_tokens"],
    script:
        "../workflow_scripts/rag_eval.py"
