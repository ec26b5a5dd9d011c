rule prepare_dataset:
    input:
        raw=config["data"]["raw"],
    output:
        train=f"results/data/{DATASET}/train.jsonl",
        val=f"results/data/{DATASET}/val.jsonl",
        test=f"results/data/{DATASET}/test.jsonl",
        rejects=f"results/data/{DATASET}/rejects.jsonl",
        stats=f"results/data/{DATASET}/stats.json",
    log:
        f"logs/prepare_dataset/{DATASET}.log",
    benchmark:
        f"benchmarks/prepare_dataset/{DATASET}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=config["data"]["seed"],
        val_fraction=config["data"]["val_fraction"],
        test_fraction=config["data"]["test_fraction"],
        max_chars=config["data"]["max_chars"],
        dedup=config["data"]["dedup"],
    script:
        "../workflow_scripts/prepare_dataset.py"


rule register_dataset:
    input:
        splits=rules.prepare_dataset.output[:3],
    output:
        f"results/data/{DATASET}/dataset_info.json",
    log:
        f"logs/register_dataset/{DATASET}.log",
    benchmark:
        f"benchmarks/register_dataset/{DATASET}.tsv"
    localrule: True
    conda:
        "../envs/data.yaml"
    threads: 1
    params:
        dataset=DATASET,
    script:
        "../workflow_scripts/register_dataset.py"
