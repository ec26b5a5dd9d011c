# Four ways to get the base model, one rule each, each into its own folder results/base_model/<source>/;
# the plan's base_manifest (base_model.source's) is the one every later stage takes. Its manifest names the
# model directory those stages load, and how it was obtained.
from conch.model.hub import weight_files, weights_sha256

# Forwarded to cluster jobs when set; never written to results or logs.
_hub_vars = [v for v in ("HF_TOKEN", "HF_ENDPOINT", "HF_HOME") if os.environ.get(v)]
if _hub_vars:

    envvars:
        *_hub_vars,


rule build_scratch_model:
    input:
        train=rules.prepare_dataset.output.train,
    output:
        model=directory("results/base_model/scratch/model"),
        manifest=PLAN.base_model.manifest_of("scratch"),
    log:
        "logs/base_model/build_scratch_model.log",
    benchmark:
        "benchmarks/base_model/build_scratch_model.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        arch=PLAN.base_model.settings["scratch"],
        template=PLAN.template,
        default_system=config["train"].get("default_system"),
    script:
        "../workflow_scripts/build_scratch_model.py"


rule fetch_hf_model:
    output:
        manifest=PLAN.base_model.manifest_of("hf"),
    log:
        "logs/base_model/fetch_hf_model.log",
    benchmark:
        "benchmarks/base_model/fetch_hf_model.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        repo_id=PLAN.base_model.settings.get("repo_id"),
        revision=PLAN.base_model.settings["revision"],
    script:
        "../workflow_scripts/fetch_hf_model.py"


# Dequantized once; the weights' hash is a param, so a replaced file reruns this and all that follows.
rule dequantize_gguf:
    input:
        gguf=lambda wc: PLAN.base_model.path,
    output:
        model=directory("results/base_model/gguf/model"),
        manifest=PLAN.base_model.manifest_of("gguf"),
    log:
        "logs/base_model/dequantize_gguf.log",
    benchmark:
        "benchmarks/base_model/dequantize_gguf.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        weights_sha256=lambda wc: weights_sha256(PLAN.base_model.path),
        template=PLAN.template,
        default_system=config["train"].get("default_system"),
    script:
        "../workflow_scripts/dequantize_gguf.py"


rule use_local_model:
    input:
        config=lambda wc: os.path.join(PLAN.base_model.path, "config.json"),
        # The weights themselves, and their hashes as a param: new weights rerun what depends on them.
        weights=lambda wc: weight_files(PLAN.base_model.path),
    output:
        manifest=PLAN.base_model.manifest_of("local"),
    log:
        "logs/base_model/use_local_model.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    threads: 1
    params:
        path=PLAN.base_model.settings.get("path"),
        weights_sha256=lambda wc: weights_sha256(PLAN.base_model.path),
    script:
        "../workflow_scripts/use_local_model.py"
