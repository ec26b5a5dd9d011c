# Experiments side by side: a comparison of every experiment, the pick of the one to serve, and a run
# manifest per experiment so any result can be traced and repeated. Guide: docs/experiments.md.
report: "../report/workflow.rst"


# A checkpoint: which experiment `all` serves is only known once the comparison has run.
checkpoint compare_experiments:
    input:
        metrics=expand(rules.evaluate.output.metrics, experiment=PLAN.experiments),
        trainer_logs=[PLAN.training_output(e, "trainer_log") for e in PLAN.experiments],
        # wall time and peak memory of each training job, side by side with its metrics
        train_benchmarks=[
            PLAN.training_output(e, "benchmark") for e in PLAN.experiments
        ],
    output:
        table=report(
            "results/compare/experiments.csv",
            caption="../report/comparison_table.rst",
            category="1. Comparison",
            labels={"figure": "metrics of every experiment"},
        ),
        chart=report(
            "results/compare/metric_by_experiment.png",
            caption="../report/comparison_chart.rst",
            category="1. Comparison",
            labels={"figure": "selection metric per experiment"},
        ),
        loss_curves=report(
            "results/compare/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="1. Comparison",
            labels={"figure": "training loss, all experiments"},
        ),
        cost_chart=report(
            "results/compare/training_cost.png",
            caption="../report/training_cost.rst",
            category="1. Comparison",
            labels={"figure": "training wall time and peak memory"},
        ),
        best="results/compare/best.json",
    log:
        "logs/compare_experiments/compare_experiments.log",
    benchmark:
        "benchmarks/compare_experiments/compare_experiments.tsv"
    # Report assembly: seconds of work, not worth a cluster job.
    localrule: True
    conda:
        "../envs/eval.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        experiments=PLAN.experiments,
        train={name: sft.train for name, sft in PLAN.sfts.items()},
        metric=PLAN.selection["metric"],
        mode=PLAN.selection["mode"],
    script:
        "../workflow_scripts/compare_experiments.py"


rule select_served:
    input:
        best=rules.compare_experiments.output.best,
        serve=lambda wc: expand(
            rules.serve.output.manifest, experiment=selected_experiment()
        ),
        smoke=lambda wc: expand(
            rules.serve.output.smoke, experiment=selected_experiment()
        ),
        run_manifest=lambda wc: f"results/manifests/{selected_experiment()}.json",
    output:
        "results/serve/selected.json",
    log:
        "logs/select_served/select_served.log",
    localrule: True
    conda:
        "../envs/eval.yaml"
    threads: 1
    params:
        experiment=selected_experiment,
        pinned=PLAN.serve.get("experiment"),
    script:
        "../workflow_scripts/select_served.py"


# Read once per base model (70B: 140 GB), not once per experiment.
rule hash_base_model:
    input:
        base=PLAN.base_manifest,
    output:
        "results/base_model/weights_sha256.json",
    log:
        "logs/hash_base_model/hash_base_model.log",
    benchmark:
        "benchmarks/hash_base_model/hash_base_model.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    script:
        "../workflow_scripts/hash_base_model.py"


rule run_manifest:
    input:
        train_yaml=lambda wc: PLAN.training_output(wc.experiment, "train_yaml"),
        # what training produced: the LoRA adapter, or the full/freeze-trained model
        trained=lambda wc: PLAN.trained_weights(wc.experiment),
        base=PLAN.base_manifest,
        base_weights=rules.hash_base_model.output[0],
        dataset_info=rules.register_dataset.output[0],
        splits=rules.prepare_dataset.output[:3],
    output:
        report(
            "results/manifests/{experiment}.json",
            caption="../report/run_manifest.rst",
            category="4. Provenance",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "file": "run manifest"},
        ),
    log:
        "logs/run_manifest/{experiment}.log",
    benchmark:
        "benchmarks/run_manifest/{experiment}.tsv"
    localrule: True
    conda:
        "../envs/train.yaml"
    threads: 1
    params:
        overrides=lambda wc: PLAN.sft(wc.experiment).overrides,
        # Everything that determines this adapter; hashed into `config_sha256`.
        settings=lambda wc: {
            "dataset": PLAN.dataset,
            "data": PLAN.config["data"],
            "base_model": PLAN.base_model.settings,
            "template": PLAN.template,
            "train": PLAN.sft(wc.experiment).train,
        },
    script:
        "../workflow_scripts/run_manifest.py"
