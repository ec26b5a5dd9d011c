rule prepare_dataset:
    input:
        raw=config["data"]["raw"],
    output:
        train=f"results/data/{PLAN.dataset}/train.jsonl",
        val=f"results/data/{PLAN.dataset}/val.jsonl",
        test=f"results/data/{PLAN.dataset}/test.jsonl",
        rejects=f"results/data/{PLAN.dataset}/rejects.jsonl",
        stats=f"results/data/{PLAN.dataset}/stats.json",
    log:
        f"logs/prepare_dataset/{PLAN.dataset}.log",
    benchmark:
        f"benchmarks/prepare_dataset/{PLAN.dataset}.tsv"
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
        f"results/data/{PLAN.dataset}/dataset_info.json",
    log:
        f"logs/register_dataset/{PLAN.dataset}.log",
    benchmark:
        f"benchmarks/register_dataset/{PLAN.dataset}.tsv"
    localrule: True
    conda:
        "../envs/data.yaml"
    threads: 1
    params:
        dataset=PLAN.dataset,
    script:
        "../workflow_scripts/register_dataset.py"
