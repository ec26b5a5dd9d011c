# One of four rules provides results/base_model/manifest.json, as `base_model.source` says.
# The manifest names the model directory every later stage loads, and how it was obtained.
from conch.model.hub import weight_files, weights_sha256

BASE_MANIFEST = "results/base_model/manifest.json"

# Forwarded to cluster jobs when set; never written to results or logs.
_hub_vars = [v for v in ("HF_TOKEN", "HF_ENDPOINT", "HF_HOME") if os.environ.get(v)]
if _hub_vars:

    envvars:
        *_hub_vars,


if config["base_model"]["source"] == "scratch":

    rule build_scratch_model:
        input:
            train=rules.prepare_dataset.output.train,
        output:
            model=directory("results/base_model/scratch"),
            manifest=BASE_MANIFEST,
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
            arch=config["base_model"]["scratch"],
            template=config["template"],
            default_system=config["train"].get("default_system"),
        script:
            "../workflow_scripts/build_scratch_model.py"

elif config["base_model"]["source"] == "hf":

    rule fetch_hf_model:
        output:
            manifest=BASE_MANIFEST,
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
            repo_id=config["base_model"]["repo_id"],
            revision=config["base_model"]["revision"],
        script:
            "../workflow_scripts/fetch_hf_model.py"

elif config["base_model"]["source"] == "gguf":

    # Dequantized once; the weights' hash is a param, so a replaced file reruns this and all that follows.
    rule dequantize_gguf:
        input:
            gguf=config["base_model"]["path"],
        output:
            model=directory("results/base_model/model"),
            manifest=BASE_MANIFEST,
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
            weights_sha256=weights_sha256(config["base_model"]["path"]),
            template=config["template"],
            default_system=config["train"].get("default_system"),
        script:
            "../workflow_scripts/dequantize_gguf.py"

else:

    rule use_local_model:
        input:
            config=os.path.join(config["base_model"].get("path", ""), "config.json"),
            # The weights themselves, and their hashes as a param: new weights rerun what depends on them.
            weights=weight_files(config["base_model"].get("path", "")),
        output:
            manifest=BASE_MANIFEST,
        log:
            "logs/base_model/use_local_model.log",
        localrule: True
        conda:
            "../envs/train.yaml"
        threads: 1
        params:
            path=config["base_model"].get("path"),
            weights_sha256=weights_sha256(config["base_model"].get("path", "")),
        script:
            "../workflow_scripts/use_local_model.py"
