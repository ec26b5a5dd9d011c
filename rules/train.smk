rule measure_token_lengths:
    input:
        train=rules.prepare_dataset.output.train,
        val=rules.prepare_dataset.output.val,
        base=BASE_MANIFEST,
    output:
        f"results/data/{DATASET}/token_lengths.json",
    log:
        f"logs/measure_token_lengths/{DATASET}.log",
    benchmark:
        f"benchmarks/measure_token_lengths/{DATASET}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        default_system=config["train"].get("default_system"),
    script:
        "../workflow_scripts/measure_token_lengths.py"


rule train_adapter:
    input:
        dataset_info=rules.register_dataset.output[0],
        train=rules.prepare_dataset.output.train,
        val=rules.prepare_dataset.output.val,
        base=BASE_MANIFEST,
        token_lengths=rules.measure_token_lengths.output[0],
    output:
        adapter="results/adapters/{experiment}/adapter_model.safetensors",
        adapter_config="results/adapters/{experiment}/adapter_config.json",
        train_yaml="results/adapters/{experiment}/train_config.yaml",
        trainer_log="results/adapters/{experiment}/trainer_log.jsonl",
        loss_plot=report(
            "results/adapters/{experiment}/training_loss.png",
            caption="../report/train_loss.rst",
            category="2. Training",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "training loss"},
        ),
    log:
        "logs/train_adapter/{experiment}.log",
    benchmark:
        "benchmarks/train_adapter/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(multinode=True),
    params:
        train=lambda wc: train_config(wc.experiment),
        dataset=DATASET,
        template=config["template"],
    script:
        "../workflow_scripts/train_adapter.py"


# Full and freeze fine-tuning: the same script; LLaMA-Factory saves the whole model, which is moved into
# model/ once training ends (checkpoints stay beside it, outside the declared output, so a killed job resumes).
use rule train_adapter as train_model with:
    output:
        model=directory("results/trained/{experiment}/model"),
        train_yaml="results/trained/{experiment}/train_config.yaml",
        trainer_log="results/trained/{experiment}/trainer_log.jsonl",
        loss_plot=report(
            "results/trained/{experiment}/training_loss.png",
            caption="../report/train_loss.rst",
            category="2. Training",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "training loss"},
        ),
    log:
        "logs/train_model/{experiment}.log",
    benchmark:
        "benchmarks/train_model/{experiment}.tsv"


rule merge_adapter:
    input:
        adapter=rules.train_adapter.output.adapter,
        base=BASE_MANIFEST,
    output:
        model=directory("results/merged/{experiment}/model"),
        export_yaml="results/merged/{experiment}/export_config.yaml",
        check="results/merged/{experiment}/merge_check.json",
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
        train=lambda wc: train_config(wc.experiment),
        template=config["template"],
        prompts=config["merge"]["check_prompts"],
        atol=config["merge"]["atol"],
        rtol=config["merge"]["rtol"],
    script:
        "../workflow_scripts/merge_adapter.py"
