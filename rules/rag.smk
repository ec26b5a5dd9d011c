# RAG branch: documents under rag.docs -> normalised documents -> chunks -> FAISS + BM25 index -> retrieval eval.
# Built when rag.enabled (get_final_output in rules/common.smk).
from conch.rag import paths as rag_paths


rule rag_ingest:
    input:
        # A function: listed only when the branch runs, so a config without the documents still parses.
        docs=lambda wc: rag_paths.document_files(PLAN.rag["docs"]),
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
        root=lambda wc: PLAN.rag["docs"],
    script:
        "../workflow_scripts/rag_ingest.py"


rule rag_chunk:
    input:
        docs=rules.rag_ingest.output.docs,
        base=PLAN.base_manifest,
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
        chunk_tokens=PLAN.rag["chunk_tokens"],
        overlap=PLAN.rag["chunk_overlap"],
    script:
        "../workflow_scripts/rag_chunk.py"


rule rag_index:
    input:
        chunks=rules.rag_chunk.output.chunks,
        base=PLAN.base_manifest,
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
        embedding_model=PLAN.rag["embedding_model"],
        batch_size=PLAN.rag["embedding_batch_size"],
        vector_index=PLAN.rag["vector_index"],
        # Deliberately not an output: Snakemake deletes outputs before a rule reruns, and the cache is what
        # lets a rerun after one changed document re-embed only that document's chunks.
        cache="results/rag/cache/embeddings.sqlite",
        retrieval={
            k: PLAN.rag[k]
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
        questions=PLAN.rag["questions"],
        merged=lambda wc: PLAN.tuned_model(wc.experiment),
        base=PLAN.base_manifest,
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
        answer_questions=PLAN.rag["eval"]["answer_questions"],
        max_new_tokens=PLAN.rag["eval"]["max_new_tokens"],
    script:
        "../workflow_scripts/rag_eval.py"
