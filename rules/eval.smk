rule evaluate:
    input:
        # General questions scored for base and tuned (conch/evaluation/retention.py); off when null.
        **({"retention": PLAN.eval["retention"]} if PLAN.eval.get("retention") else {}),
        test=rules.prepare_dataset.output.test,
        base=PLAN.base_manifest,
        # The merged LoRA model, or the full/freeze-trained one (rules/train.smk).
        merged=lambda wc: PLAN.tuned_model(wc.experiment),
        loss_plot=lambda wc: PLAN.training_output(wc.experiment, "loss_plot"),
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
        max_new_tokens=PLAN.eval["max_new_tokens"],
        batch_size=PLAN.eval["batch_size"],
        persona_names=PLAN.eval["persona_names"],
        max_samples=PLAN.eval.get("max_samples"),
        retention_max_new_tokens=PLAN.eval["retention_max_new_tokens"],
        template=PLAN.template,
    script:
        "../workflow_scripts/evaluate.py"
