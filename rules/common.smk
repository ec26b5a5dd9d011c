import json
import os
import re

import yaml
from snakemake.utils import validate

from conch.workflow.config import check as check_config, drop_train_nulls, stage_nulls
from conch.errors import ConfigError
from conch.workflow.experiments import all_experiments
from conch.workflow.imports import reach

# ---- config: refuse a bad config before any job runs -------------------------------------------------
SCHEMA = os.path.join(workflow.basedir, "config", "schema.yaml")
with open(SCHEMA, encoding="utf-8") as fh:
    _schema = yaml.safe_load(fh)
# >>> serve settings: their schema and defaults come from ServeSettings (conch/server/settings.py)
from conch.server.settings import schema_file, with_serve_settings

with_serve_settings(_schema)
# <<< serve settings
# A training key set to null is dropped, whatever its type in the schema; a preference stage's nulls are
# kept aside, to drop the experiment's key for that stage (rules/preference.smk).
STAGE_NULLS = stage_nulls(config)
drop_train_nulls(config)
try:
    check_config(config, _schema)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
# serve settings: validate() takes a path, not a dict
with schema_file(_schema) as _merged:
    validate(config, _merged)  # fills in the schema's defaults

DATASET = config["dataset"]
EXPERIMENT_OVERRIDES = all_experiments(config)  # named experiments, then the grid's
EXPERIMENTS = list(EXPERIMENT_OVERRIDES)
GPUS = config["compute"]["gpus"]

# ---- optional branches: whether each is on is decided here, and only here ----------------------------
# The Snakefile includes a branch's rules only when it is on, and get_final_output() (below) adds its
# results to `all`. A new branch: a flag here, an `if BRANCHES[...]: include:` in the Snakefile, a section
# in get_final_output().
BRANCHES = {
    "rag": config["rag"]["enabled"],
    "preference": bool(config["preference"]["methods"]),
    "gguf": bool(config["export"]["gguf"]),
}


wildcard_constraints:
    experiment="|".join(map(re.escape, EXPERIMENTS)),


# ---- code inputs: editing a conch module reruns exactly the rules whose scripts reach it ----------------
def add_code_inputs():
    """Give every rule that runs a script the conch files the script reaches (conch/workflow/imports.py) as its
    input `code`, found from the imports themselves. Called once at the end of the Snakefile, when every
    rule is defined, so a new rule needs nothing written for it."""
    for each in workflow.rules:
        if each.script:
            script = each.basedir.join(each.script).get_path_or_uri(secret_free=True)
            # An `input:` directive sets the modifier; a rule without one (fetch_hf_model) needs it here.
            if each.input_modifier is None:
                each.input_modifier = workflow.modifier.path_modifier
            each.set_input(code=[str(f) for f in reach(script, workflow.basedir).files])


# ---- experiments ---------------------------------------------------------------------------------------
def train_config(experiment, *blocks):
    """LLaMA-Factory training keys for one experiment: the defaults under `train`, then its overrides,
    then each block over them (a preference stage's keys).

    A key set to null is dropped, so a config layered over another can remove a default.
    """
    merged = {**config["train"], **EXPERIMENT_OVERRIDES[experiment]}
    for block in blocks:
        merged.update(block)
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


# ---- resources: portable tags only; site settings live in profiles (docs/cluster.md) -------------------
from conch.cluster import launch, preflight

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
    preference.serve, default the first of preference.methods); else the fine-tuned SFT model
    (merged LoRA, or full/freeze-trained: tuned_model in rules/train.smk).
    """
    pref = config["preference"]
    method = pref.get("serve") or (pref["methods"][0] if pref["methods"] else "sft")
    if method == "sft":
        return tuned_model(experiment)
    return f"results/{method}/{experiment}/model"


def get_final_output():
    """Everything `all` builds: for each experiment its eval report and run manifest, the comparison of
    them and the served one; then the results of each branch that is on."""
    final = [
        *expand(rules.evaluate.output.report, experiment=EXPERIMENTS),
        *expand(rules.run_manifest.output[0], experiment=EXPERIMENTS),
        rules.compare_experiments.output.table,
        rules.select_served.output[0],
    ]
    if BRANCHES["rag"]:
        final += [
            rules.rag_ingest.output.stats,
            rules.rag_index.output.index,
            *expand(rules.rag_eval.output.metrics, experiment=EXPERIMENTS),
        ]
    if BRANCHES["preference"]:
        final += expand(rules.evaluate_preference.output.report, experiment=EXPERIMENTS)
    if BRANCHES["gguf"]:
        final += expand(rules.export_gguf.output.check, experiment=EXPERIMENTS)
    return final
