# `make webui`: LLaMA-Factory's web UI on what the workflow built (conch/training/webui.py). Not part of `all`: this rule
# only writes what the UI is opened on, building the registered dataset and the base model first if needed.


rule webui:
    input:
        dataset_info=rules.register_dataset.output[0],
        base=PLAN.base_manifest,
    output:
        "results/webui/launch.json",
    log:
        "logs/webui/launch.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    threads: 1
    params:
        template=PLAN.template,
    script:
        "../workflow_scripts/webui.py"
