"""dpo / kto / rm through `llamafactory-cli train`, on a YAML written from config and kept beside the adapter."""

from pathlib import Path

from conch.cluster import gpus, launch
from conch.model.hub import base_model_path
from conch.preference.stages import stage_args
from conch.training import lf
from conch.workflow.progress import follow_trainer_log

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
p = snakemake.params
stage = p.get("stage") or snakemake.wildcards.method
out_dir = Path(snakemake.output.adapter).parent
# A full/freeze-trained SFT model has no adapter (start_from: adapter is refused for it before any job).
sft_adapter = str(Path(snakemake.input.sft_adapter).parent) if snakemake.input.sft_adapter else ""
args = stage_args(
    stage,
    launch.resolve_deepspeed(p.train, Path(snakemake.scriptdir).parent),
    start_from=p.start_from,
    sft_model=snakemake.input.sft_model,
    base_model=base_model_path(snakemake.input.base),
    sft_adapter=sft_adapter,
    dataset=p.dataset,
    dataset_dir=str(Path(snakemake.input.dataset_info).parent),
    template=p.template,
    output_dir=str(out_dir),
    with_val=Path(snakemake.input.val).stat().st_size > 0,
)
if not gpus.cuda_usable():
    args["bf16"] = args["fp16"] = False  # CPU kernels: full precision
lf.prepare_output_dir(
    out_dir,
    args,
    [snakemake.input.train, snakemake.input.val],
    [snakemake.input.sft_model, *filter(None, [sft_adapter]), args["model_name_or_path"]],
    resume=stage != "rm",
)
lf.write_yaml(args, snakemake.output.train_yaml)
open(snakemake.log[0], "w").close()
with follow_trainer_log(
    snakemake.output.trainer_log, f"{snakemake.rule} {stage} {snakemake.wildcards.experiment}"
):
    launch.run_train(
        snakemake.output.train_yaml, snakemake.log[0], launch.launch_env(snakemake.config["compute"])
    )
