from conch.rag.paths import resolve as resolve_path

# General questions scored for base and tuned (conch/evaluation/retention.py); a workdir without data/ uses the bundled set.
RETENTION = (
    {"retention": resolve_path(config["eval"]["retention"], workflow.basedir)}
    if config["eval"].get("retention")
    else {}
)


rule evaluate:
    input:
        **RETENTION,
        test=rules.prepare_dataset.output.test,
        base=BASE_MANIFEST,
        # The merged LoRA model, or the full/freeze-trained one (rules/train.smk).
        merged=lambda wc: tuned_model(wc.experiment),
        loss_plot=trained("loss_plot"),
    output:
        metrics="results/eval/{experiment}/metrics.json",
        samples=report(
            "results/eval/{experiment}/samples.tsv",
            caption="../report/eval_samples.rst",
            category="3. Evaluation",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "sample generations"},
        ),
        chart=report(
            "results/eval/{experiment}/base_vs_tuned.png",
            caption="../report/eval_chart.rst",
            category="3. Evaluation",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "base vs tuned"},
        ),
        report="results/eval/{experiment}/report.html",
        retention="results/eval/{experiment}/retention.tsv",
    log:
        "logs/evaluate/{experiment}.log",
    benchmark:
        "benchmarks/evaluate/{experiment}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(),
    params:
        max_new_tokens=config["eval"]["max_new_tokens"],
        batch_size=config["eval"]["batch_size"],
        persona_names=config["eval"]["persona_names"],
        max_samples=config["eval"].get("max_samples"),
        retention_max_new_tokens=config["eval"]["retention_max_new_tokens"],
        template=config["template"],
    script:
        "../workflow_scripts/evaluate.py"
