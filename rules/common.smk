import glob
import json
import os
import re

import yaml
from snakemake.utils import validate

from conch.config import check as check_config
from conch.errors import ConfigError
from conch.experiments import all_experiments

# ---- config: refuse a bad config before any job runs -------------------------------------------------
SCHEMA = os.path.join(workflow.basedir, "config", "schema.yaml")
with open(SCHEMA, encoding="utf-8") as fh:
    _schema = yaml.safe_load(fh)
try:
    check_config(config, _schema)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, SCHEMA)  # fills in the schema's defaults

DATASET = config["dataset"]
EXPERIMENT_OVERRIDES = all_experiments(config)  # named experiments, then the grid's
EXPERIMENTS = list(EXPERIMENT_OVERRIDES)
GPUS = config["compute"]["gpus"]


wildcard_constraints:
    experiment="|".join(map(re.escape, EXPERIMENTS)),


# ---- code the scripts import: listed as inputs so that editing a module reruns the rules using it ----
def conch_code(*modules):
    root = os.path.join(workflow.basedir, "conch")
    files = [os.path.join(root, "__init__.py"), os.path.join(root, "errors.py")]
    for module in modules:
        package = os.path.join(root, module)
        if os.path.isdir(package):
            files += sorted(glob.glob(os.path.join(package, "*.py")))
        else:
            files.append(f"{package}.py")
    return files


# ---- experiments ---------------------------------------------------------------------------------------
def train_config(experiment):
    """LLaMA-Factory training keys for one experiment: the defaults under `train`, then its overrides.

    A key set to null is dropped, so a config layered over another can remove a default.
    """
    merged = {**config["train"], **EXPERIMENT_OVERRIDES[experiment]}
    return {key: value for key, value in merged.items() if value is not None}


def selected_experiment(wildcards=None):
    """The experiment `all` serves: `serve.experiment` when pinned, else the best by `selection`."""
    pinned = config["serve"].get("experiment")
    # Known without the comparison, so a dry run shows the serve job.
    if pinned or len(EXPERIMENTS) == 1:
        return pinned or EXPERIMENTS[0]
    best = checkpoints.compare_experiments.get().output.best
    with open(best, encoding="utf-8") as fh:
        return json.load(fh)["best"]


def experiment_outputs():
    """rules/experiments.smk: a run manifest per experiment, the comparison, the served experiment."""
    return [
        *expand(rules.run_manifest.output[0], experiment=EXPERIMENTS),
        rules.compare_experiments.output.table,
        rules.select_served.output[0],
    ]


# ---- resources: portable tags only; site settings live in profiles (docs/cluster.md) -------------------
from conch import launch, preflight

# Software: each rule's conda env (`--sdm conda`), or this one image for every rule (`--sdm apptainer`).


container: config["compute"]["container"]


def gpu_resources(mem_mb=None, multinode=False):
    """gpu, gpu_model, cpus_per_gpu, mem_mb, runtime (x attempt) from config `compute`."""
    res = launch.resource_tags(config["compute"], multinode=multinode)
    if mem_mb:
        res["mem_mb"] = mem_mb
    return res


# A profile that cannot serve config (GPU cap, resource typos; partitions and accounts once the executor
# is known) fails here, before any job is submitted.
if workflow.is_main_process:
    try:
        preflight.check_parse(workflow, GPUS)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


onstart:
    try:
        preflight.check_run(workflow)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


def served_model(experiment):
    """The model `serve` serves: with the preference branch on, its aligned model (rules/preference.smk:
    preference.serve, default the first of preference.methods); else the merged SFT model.
    """
    pref = config["preference"]
    method = pref.get("serve") or (pref["methods"][0] if pref["methods"] else "sft")
    if method == "sft":
        return f"results/merged/{experiment}/model"
    return f"results/{method}/{experiment}/model"


def final_outputs():
    # experiment_outputs: rules/experiments.smk; rag_outputs: rules/rag.smk;
    # PREFERENCE_OUTPUTS: rules/preference.smk; gguf_outputs: rules/export.smk
    return (
        expand("results/eval/{experiment}/report.html", experiment=EXPERIMENTS)
        + experiment_outputs()
        + rag_outputs()
        + PREFERENCE_OUTPUTS
        + gguf_outputs()
    )
