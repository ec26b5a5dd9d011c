"""Rules train_preference (dpo, kto) and train_reward_model (rm): `llamafactory-cli train` on a YAML written
from config and kept beside the adapter."""

from pathlib import Path

from conch.cluster import gpus, launch
from conch.jobs.progress import follow_trainer_log
from conch.llamafactory import lf
from conch.model.hub import base_model_path
from conch.preference.stages import stage_args


def run(input, output, params, log, wildcards, resources, config, rule, scriptdir):
    _gpus = gpus.assign_for(resources, config)  # held until the job ends; set before CUDA starts
    p = params
    stage = p.get("stage") or wildcards.method
    out_dir = Path(output.adapter).parent
    # A full/freeze-trained SFT model has no adapter (start_from: adapter is refused for it before any job).
    sft_adapter = str(Path(input.sft_adapter).parent) if input.sft_adapter else ""
    args = stage_args(
        stage,
        launch.resolve_deepspeed(p.train, Path(scriptdir).parent),
        start_from=p.start_from,
        sft_model=input.sft_model,
        base_model=base_model_path(input.base),
        sft_adapter=sft_adapter,
        dataset=p.dataset,
        dataset_dir=str(Path(input.dataset_info).parent),
        template=p.template,
        output_dir=str(out_dir),
        with_val=Path(input.val).stat().st_size > 0,
    )
    if not gpus.cuda_usable():
        args["bf16"] = args["fp16"] = False  # CPU kernels: full precision
    lf.prepare_output_dir(
        out_dir,
        args,
        [input.train, input.val],
        [input.sft_model, *filter(None, [sft_adapter]), args["model_name_or_path"]],
        resume=stage != "rm",
    )
    lf.write_yaml(args, output.train_yaml)
    open(log, "w").close()
    with follow_trainer_log(output.trainer_log, f"{rule} {stage} {wildcards.experiment}"):
        launch.run_train(output.train_yaml, log, launch.launch_env(config["compute"]))
