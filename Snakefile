# conch: raw instruction data -> registered dataset -> LoRA adapter -> merged model -> eval report -> served endpoint.
# Rules live in rules/<topic>.smk; this file only wires them together.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Scripts and the server share the `conch` package at the repository root; jobs (local, conda, Slurm)
# inherit this path, so no install step is needed to run the workflow.
sys.path.insert(0, workflow.basedir)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p
)


envvars:
    "PYTHONPATH",


configfile: "config/config.yaml"


include: "rules/common.smk"
# Every rule is defined whatever the config; get_final_output() (rules/common.smk) decides what `all` builds.
include: "rules/data.smk"
include: "rules/base_model.smk"
include: "rules/train.smk"
include: "rules/eval.smk"
include: "rules/rag.smk"
include: "rules/preference.smk"
include: "rules/export.smk"
include: "rules/serve.smk"
include: "rules/experiments.smk"
include: "rules/webui.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


# Last, once every rule is defined: each rule's code inputs, computed from its script's imports.
add_code_inputs()
