rule serve:
    input:
        # The knowledge base is served too when the RAG branch is on (rules/rag.smk builds it).
        **({"rag_index": "results/rag/index"} if config["rag"]["enabled"] else {}),
        model=lambda wc: served_model(wc.experiment),
        check=rules.merge_adapter.output.check,
        code=conch_code(
            "server",
            "modeling",
            "gpus",
            *(["rag"] if config["rag"]["enabled"] else []),
        ),
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
