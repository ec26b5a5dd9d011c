rule serve:
    input:
        # The knowledge base is served too when the RAG branch is on, and the smoke test asks it a question
        # from rag.questions.
        **(
            {"rag_index": rules.rag_index.output.index, "rag_questions": RAG_QUESTIONS}
            if BRANCHES["rag"]
            else {}
        ),
        model=lambda wc: served_model(wc.experiment),
        check=lambda wc: merge_check(wc.experiment),
    output:
        manifest="results/serve/{experiment}/manifest.json",
        smoke="results/serve/{experiment}/smoke_test.json",
    log:
        "logs/serve/{experiment}.log",
    benchmark:
        "benchmarks/serve/{experiment}.tsv"
    conda:
        "../envs/serve.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(),
    params:
        host=config["serve"]["host"],
        port=config["serve"]["port"],
        max_new_tokens=config["serve"]["max_new_tokens"],
        max_batch_size=config["serve"]["max_batch_size"],
        max_queue=config["serve"]["max_queue"],
        template=config["template"],
        train=lambda wc: train_config(wc.experiment),
        prompt=config["merge"]["check_prompts"][0],
    script:
        "../workflow_scripts/serve.py"
