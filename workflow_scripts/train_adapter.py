"""LoRA SFT through `llamafactory-cli train`, on a YAML written from config and kept beside the adapter."""

import hashlib
import json
import shutil
from pathlib import Path

import torch

from conch import gpus, launch, lf
from conch.modeling import base_model_path

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
out_dir = Path(snakemake.output.adapter).parent
args = lf.train_args(
    launch.resolve_deepspeed(snakemake.params.train, Path(snakemake.scriptdir).parent),
    base_model=base_model_path(snakemake.input.base),
    dataset=snakemake.params.dataset,
    dataset_dir=str(Path(snakemake.input.dataset_info).parent),
    template=snakemake.params.template,
    output_dir=str(out_dir),
)
if Path(snakemake.input.val).stat().st_size > 0 and args.get("eval_strategy", "no") != "no":
    args["eval_dataset"] = f"{snakemake.params.dataset}_val"
if not torch.cuda.is_available():
    args["bf16"] = args["fp16"] = False  # CPU kernels: full precision

# LLaMA-Factory resumes from the last checkpoint in output_dir. Only allow that for the very same run
# (an interrupted job); checkpoints of a run with other arguments or data are stale and removed.
data_hash = hashlib.sha256(Path(snakemake.input.train).read_bytes()).hexdigest()
run_id = hashlib.sha256(json.dumps([args, data_hash], sort_keys=True).encode()).hexdigest()[:16]
stamp = out_dir / ".conch_run_id"
if stamp.exists() and stamp.read_text().strip() != run_id:
    for stale in out_dir.glob("checkpoint-*"):
        shutil.rmtree(stale)
out_dir.mkdir(parents=True, exist_ok=True)
stamp.write_text(run_id + "\n")

lf.write_yaml(args, snakemake.output.train_yaml)
open(snakemake.log[0], "w").close()
launch.run_train(
    snakemake.output.train_yaml, snakemake.log[0], launch.launch_env(snakemake.config["compute"])
)
