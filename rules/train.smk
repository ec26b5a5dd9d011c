rule measure_token_lengths:
    input:
        train=rules.prepare_dataset.output.train,
        val=rules.prepare_dataset.output.val,
        base=PLAN.base_manifest,
    output:
        f"results/data/{PLAN.dataset}/token_lengths.json",
    log:
        f"logs/measure_token_lengths/{PLAN.dataset}.log",
    benchmark:
        f"benchmarks/measure_token_lengths/{PLAN.dataset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        default_system=PLAN.config["train"].get("default_system"),
    script:
        "../workflow_scripts/measure_token_lengths.py"


rule train_adapter:
    input:
        dataset_info=rules.register_dataset.output[0],
        train=rules.prepare_dataset.output.train,
        val=rules.prepare_dataset.output.val,
        base=PLAN.base_manifest,
        token_lengths=rules.measure_token_lengths.output[0],
    output:
        adapter=layout.TRAINING["lora"]["adapter"],
        adapter_config="results/adapters/{experiment}/adapter_config.json",
        train_yaml=layout.TRAINING["lora"]["train_yaml"],
        trainer_log=layout.TRAINING["lora"]["trainer_log"],
        loss_plot=report(
            layout.TRAINING["lora"]["loss_plot"],
            caption="../report/train_loss.rst",
            category="2. Training",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "training loss"},
        ),
    log:
        "logs/train_adapter/{experiment}.log",
    benchmark:
        layout.TRAINING["lora"]["benchmark"]
    conda:
        "../envs/train.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(multinode=True),
    params:
        train=lambda wc: PLAN.sft(wc.experiment).train,
        dataset=PLAN.dataset,
        template=PLAN.template,
    script:
        "../workflow_scripts/train_adapter.py"


# Full and freeze fine-tuning: the same script; LLaMA-Factory saves the whole model, which is moved into
# model/ once training ends (checkpoints stay beside it, outside the declared output, so a killed job resumes).
use rule train_adapter as train_model with:
    output:
        model=directory(layout.TRAINING["model"]["model"]),
        train_yaml=layout.TRAINING["model"]["train_yaml"],
        trainer_log=layout.TRAINING["model"]["trainer_log"],
        loss_plot=report(
            layout.TRAINING["model"]["loss_plot"],
            caption="../report/train_loss.rst",
            category="2. Training",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "training loss"},
        ),
    log:
        "logs/train_model/{experiment}.log",
    benchmark:
        layout.TRAINING["model"]["benchmark"]


rule merge_adapter:
    input:
        adapter=rules.train_adapter.output.adapter,
        base=PLAN.base_manifest,
    output:
        model=directory(layout.MERGED_MODEL),
        export_yaml="results/merged/{experiment}/export_config.yaml",
        check=layout.MERGE_CHECK,
    log:
        "logs/merge_adapter/{experiment}.log",
    benchmark:
        "benchmarks/merge_adapter/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(),
    params:
        train=lambda wc: PLAN.sft(wc.experiment).train,
        template=PLAN.template,
        prompts=PLAN.merge["check_prompts"],
        atol=PLAN.merge["atol"],
        rtol=PLAN.merge["rtol"],
    script:
        "../workflow_scripts/merge_adapter.py"
