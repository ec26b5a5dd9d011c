rule serve:
    input:
        # The knowledge base is served too when the RAG branch is on, and the smoke test asks it a question
        # from rag.questions.
        **(
            {
                "rag_index": rules.rag_index.output.index,
                "rag_questions": PLAN.rag["questions"],
            }
            if PLAN.branches.rag
            else {}
        ),
        model=lambda wc: PLAN.served_model(wc.experiment),
        check=lambda wc: PLAN.merge_check(wc.experiment),
    output:
        # The served settings as a `python -m conch.server --config` file, which the smoke test starts from.
        config="results/serve/{experiment}/serve.yaml",
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
        # The whole `serve` block: its settings are conch.server.settings.ServeSettings' fields.
        serve=PLAN.serve,
        chat_format=lambda wc: PLAN.chat_format(wc.experiment),
        prompt=PLAN.merge["check_prompts"][0],
    script:
        "../workflow_scripts/serve.py"
