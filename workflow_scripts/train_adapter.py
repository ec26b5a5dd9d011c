"""SFT through `llamafactory-cli train`, on a YAML written from config and kept beside its output.

Rule train_adapter (LoRA): the adapter. Rule train_model (full, freeze): the whole model, moved into
`output.model` once training has finished.

Kept light on purpose (no torch, no transformers): whatever this script imports is paid again by every
training job before LLaMA-Factory starts, and counts against the workflow's ≤3 % overhead.
"""

import json
import sys
from pathlib import Path

from conch.cluster import gpus, launch
from conch.model.hub import base_model_path
from conch.training import lf
from conch.workflow.progress import follow_trainer_log

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
out_dir = Path(snakemake.output.train_yaml).parent
args = lf.train_args(
    launch.resolve_deepspeed(snakemake.params.train, Path(snakemake.scriptdir).parent),
    base_model=base_model_path(snakemake.input.base),
    dataset=snakemake.params.dataset,
    dataset_dir=str(Path(snakemake.input.dataset_info).parent),
    template=snakemake.params.template,
    output_dir=str(out_dir),
)
if Path(snakemake.input.val).stat().st_size > 0 and lf.train_value(args, "eval_strategy") != "no":
    args["eval_dataset"] = f"{snakemake.params.dataset}_val"
if not gpus.cuda_usable():
    args["bf16"] = args["fp16"] = False  # CPU kernels: full precision

# An interrupted job resumes from its last checkpoint; checkpoints of any other run are removed.
data = [snakemake.input.train, snakemake.input.val, snakemake.input.base]
lf.prepare_output_dir(out_dir, args, data, [args["model_name_or_path"]])
lf.write_yaml(args, snakemake.output.train_yaml)
open(snakemake.log[0], "w").close()

# LLaMA-Factory truncates records longer than cutoff_len without a word: say so (lengths measured once per
# dataset by measure_token_lengths, with the base model's tokenizer).
cutoff_len = lf.train_value(args, "cutoff_len")
lengths = json.loads(Path(snakemake.input.token_lengths).read_text(encoding="utf-8"))["train"]
long = sum(n > cutoff_len for n in lengths) if cutoff_len else 0
if long:
    note = (
        f"train_adapter: {long} of {len(lengths)} train records are longer than cutoff_len "
        f"{cutoff_len} tokens and will be truncated; raise train.cutoff_len to keep them whole\n"
    )
    print(note, end="", file=sys.stderr)
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        log.write(note)
# Steps, loss and ETA on the terminal while LLaMA-Factory's own output goes to the log.
job = "train_model" if snakemake.output.get("model") else "train_adapter"
with follow_trainer_log(snakemake.output.trainer_log, f"{job} {snakemake.wildcards.experiment}"):
    launch.run_train(
        snakemake.output.train_yaml, snakemake.log[0], launch.launch_env(snakemake.config["compute"])
    )
if snakemake.output.get("model"):  # rule train_model
    lf.collect_model(out_dir, snakemake.output.model)
