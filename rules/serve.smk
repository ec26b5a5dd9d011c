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
        serve=config["serve"],
        # What the served model renders tools and parses reasoning with: the template it was trained with.
        chat_format=lambda wc: {
            "template": config["template"],
            **{
                k: train_config(wc.experiment).get(k)
                for k in ("default_system", "tool_format")
            },
        },
        prompt=config["merge"]["check_prompts"][0],
    script:
        "../workflow_scripts/serve.py"
