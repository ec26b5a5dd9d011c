"""LoRA SFT through `llamafactory-cli train`, on a YAML written from config and kept beside the adapter."""

import hashlib
import json
import shutil
import sys
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
# (an interrupted job); checkpoints of a run with other arguments, data or base model are stale and removed.
# The base model's path stays the same when it is rebuilt, so its files' sizes and times are hashed too.
base_dir = Path(args["model_name_or_path"])
base_files = sorted(f for f in base_dir.rglob("*") if f.is_file()) if base_dir.is_dir() else []
base_stamp = [(str(f.relative_to(base_dir)), f.stat().st_size, f.stat().st_mtime_ns) for f in base_files]
data_hashes = [
    hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in (snakemake.input.train, snakemake.input.val)
]
run_key = [args, data_hashes, Path(snakemake.input.base).read_text(encoding="utf-8"), base_stamp]
run_id = hashlib.sha256(json.dumps(run_key, sort_keys=True).encode()).hexdigest()[:16]
stamp = out_dir / ".conch_run_id"
# No stamp, no proof: checkpoints of unknown origin are not resumed either.
if not stamp.exists() or stamp.read_text().strip() != run_id:
    for stale in out_dir.glob("checkpoint-*"):
        shutil.rmtree(stale)


def is_complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: without it (a kill while saving), resuming would crash."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


for half_saved in [c for c in out_dir.glob("checkpoint-*") if c.is_dir() and not is_complete(c)]:
    shutil.rmtree(half_saved)
out_dir.mkdir(parents=True, exist_ok=True)
stamp.write_text(run_id + "\n")


def over_cutoff(records: list[dict], cutoff_len: int) -> int:
    """Records whose rendered prompt+answer exceeds cutoff_len tokens: LLaMA-Factory truncates them silently."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args["model_name_or_path"])
    count = 0
    for record in records:
        system = record.get("system") or args.get("default_system")
        messages = ([{"role": "system", "content": system}] if system else []) + record["messages"]
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # no chat template, or one without tool roles: count the bare contents
            text = "\n".join(m["content"] for m in messages)
        count += len(tokenizer(text, add_special_tokens=False)["input_ids"]) > cutoff_len
    return count


lf.write_yaml(args, snakemake.output.train_yaml)
open(snakemake.log[0], "w").close()
cutoff_len = args.get("cutoff_len", 2048)  # LLaMA-Factory's default
if cutoff_len:
    lines = Path(snakemake.input.train).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    long = over_cutoff(records, cutoff_len)
    if long:
        note = (
            f"train_adapter: {long} of {len(records)} train records are longer than cutoff_len "
            f"{cutoff_len} tokens and will be truncated; raise train.cutoff_len to keep them whole\n"
        )
        print(note, end="", file=sys.stderr)
        with open(snakemake.log[0], "a", encoding="utf-8") as log:
            log.write(note)
launch.run_train(
    snakemake.output.train_yaml, snakemake.log[0], launch.launch_env(snakemake.config["compute"])
)
