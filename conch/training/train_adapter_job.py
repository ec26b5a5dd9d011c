"""Rules train_adapter (LoRA: the adapter) and train_model (full, freeze: the whole model, moved into
`output.model` once training has finished): SFT through `llamafactory-cli train`, on a YAML written from
config and kept beside its output.

Kept light on purpose (no torch, no transformers): whatever this module imports is paid again by every
training job before LLaMA-Factory starts, and counts against the workflow's ≤3 % overhead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conch.cluster import gpus, launch
from conch.jobs.progress import follow_trainer_log
from conch.llamafactory import lf
from conch.model.hub import base_model_path


def run(input, output, params, log, wildcards, resources, config, scriptdir):
    _gpus = gpus.assign_for(resources, config)  # held until the job ends; set before CUDA starts
    out_dir = Path(output.train_yaml).parent
    args = lf.train_args(
        launch.resolve_deepspeed(params.train, Path(scriptdir).parent),
        base_model=base_model_path(input.base),
        dataset=params.dataset,
        dataset_dir=str(Path(input.dataset_info).parent),
        template=params.template,
        output_dir=str(out_dir),
    )
    if Path(input.val).stat().st_size > 0 and lf.train_value(args, "eval_strategy") != "no":
        args["eval_dataset"] = f"{params.dataset}_val"
    if not gpus.cuda_usable():
        args["bf16"] = args["fp16"] = False  # CPU kernels: full precision

    # An interrupted job resumes from its last checkpoint; checkpoints of any other run are removed.
    lf.prepare_output_dir(out_dir, args, [input.train, input.val, input.base], [args["model_name_or_path"]])
    lf.write_yaml(args, output.train_yaml)
    open(log, "w").close()
    warn_truncation(args, input.token_lengths, log)
    # Steps, loss and ETA on the terminal while LLaMA-Factory's own output goes to the log.
    job = "train_model" if output.get("model") else "train_adapter"
    with follow_trainer_log(output.trainer_log, f"{job} {wildcards.experiment}"):
        launch.run_train(output.train_yaml, log, launch.launch_env(config["compute"]))
    if output.get("model"):  # rule train_model
        lf.collect_model(out_dir, output.model)


def warn_truncation(args: dict, token_lengths: str, log: str) -> None:
    """LLaMA-Factory truncates records longer than cutoff_len without a word: say so (lengths measured once
    per dataset by measure_token_lengths, with the base model's tokenizer)."""
    cutoff_len = lf.train_value(args, "cutoff_len")
    lengths = json.loads(Path(token_lengths).read_text(encoding="utf-8"))["train"]
    long = sum(n > cutoff_len for n in lengths) if cutoff_len else 0
    if long:
        note = (
            f"train_adapter: {long} of {len(lengths)} train records are longer than cutoff_len "
            f"{cutoff_len} tokens and will be truncated; raise train.cutoff_len to keep them whole\n"
        )
        print(note, end="", file=sys.stderr)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(note)
