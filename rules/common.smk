import json
import os
import re

from conch.errors import ConfigError
from conch.workflow import layout
from conch.workflow import plan as conch_plan
from conch.workflow.imports import reach

# ---- config schema: config/schema.yaml with the serve settings' part, which ServeSettings defines ----------
SCHEMA = os.path.join(workflow.basedir, "config", "schema.yaml")
_schema = conch_plan.load_schema(SCHEMA)

# ---- the plan: the config checked against the schema (a bad one is refused before any job runs), every
# stage's settings and which branches run (conch/workflow/plan.py); rules only wire it ----------------------
try:
    PLAN = conch_plan.build(config, _schema, workflow.basedir)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
# Snakemake's own directives (container:, threads:) read `config`: the validated one, defaults in.
config.update(PLAN.config)


wildcard_constraints:
    experiment="|".join(map(re.escape, PLAN.experiments)),
    method="dpo|kto",


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


def selected_experiment(wildcards=None):
    """The experiment `all` serves: `serve.experiment` when pinned, else the best by `selection`."""
    pinned = PLAN.serve.get("experiment")
    # Known without the comparison, so a dry run shows the serve job.
    if pinned or len(PLAN.experiments) == 1:
        return pinned or PLAN.experiments[0]
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
        preflight.check_parse(workflow, config["compute"]["gpus"])
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


onstart:
    try:
        preflight.check_run(workflow)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


def get_final_output():
    """Everything `all` builds: for each experiment its eval report and run manifest, the comparison of
    them and the served one; then the results of each branch that is on. The one place a branch is decided.
    """
    experiments = PLAN.experiments
    final = [
        *expand(rules.evaluate.output.report, experiment=experiments),
        *expand(rules.run_manifest.output[0], experiment=experiments),
        rules.compare_experiments.output.table,
        rules.select_served.output[0],
    ]
    if PLAN.branches.rag:
        final += [
            rules.rag_ingest.output.stats,
            rules.rag_index.output.index,
            *expand(rules.rag_eval.output.metrics, experiment=experiments),
        ]
    if PLAN.branches.preference:
        final += expand(rules.evaluate_preference.output.report, experiment=experiments)
    if PLAN.branches.gguf:
        final += expand(rules.export_gguf.output.check, experiment=experiments)
    return final
