"""PPO with TRL's PPOTrainer: the SFT model, a new LoRA adapter, the reward model's scores on its answers."""

import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from conch.cluster import gpus  # noqa: E402
from conch.preference.ppo import train_ppo  # noqa: E402
from conch.preference.prepare import prompts  # noqa: E402
from conch.preference.stages import PPO_DEFAULTS  # noqa: E402
from conch.training import lf
from conch.workflow.files import as_paths, read_jsonl, write_jsonl  # noqa: E402
from conch.workflow.progress import Progress, trainer_callback  # noqa: E402

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
p = snakemake.params
train_prompts = prompts([r for f in as_paths(snakemake.input.prompts) for r in read_jsonl(f)])
train_prompts = train_prompts[: p.max_prompts or None]
eval_prompts = prompts(read_jsonl(snakemake.input.eval_prompts))
if not train_prompts:
    sys.exit(f"train_ppo: no prompts in {snakemake.input.prompts}")
out = Path(snakemake.output.model).parent
ppo_args = {**PPO_DEFAULTS, **p.ppo}
# Kept beside the output, like LLaMA-Factory's YAML: what this PPO run was given.
lf.write_yaml(
    {
        "policy": snakemake.input.sft_model,
        "reward_model": snakemake.input.reward_model,
        "prompts": len(train_prompts),
        "ppo": ppo_args,
    },
    snakemake.output.ppo_yaml,
)
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(f"PPO on {len(train_prompts)} prompts, reward model {snakemake.input.reward_model}\n")
# TRL prints its progress; keep it in the rule's log with the rest, and show steps on the terminal (the
# Progress keeps the real stderr: it is made before the redirection).
progress = Progress(f"train_ppo {snakemake.wildcards.experiment}")
with open(snakemake.log[0], "a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
    result = train_ppo(
        policy_path=snakemake.input.sft_model,
        reward_path=snakemake.input.reward_model,
        train_contexts=train_prompts,
        eval_contexts=eval_prompts,
        out_dir=out,
        lora_train=p.lora,
        ppo_args=ppo_args,
        # Prompts cut as LLaMA-Factory cuts the SFT and DPO data: at cutoff_len.
        max_prompt_tokens=lf.train_value(p.lora, "cutoff_len"),
        callbacks=[trainer_callback(progress)],
    )
progress.close()
history = result["log_history"]
write_jsonl(snakemake.output.ppo_log, history)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot([h["episode"] for h in history], [h["objective/scores"] for h in history], marker="o", label="reward")
ax.plot(
    [h["episode"] for h in history],
    [h["objective/rlhf_reward"] for h in history],
    label="reward - KL penalty",
)
ax.set_xlabel("episode (prompts answered)")
ax.set_title("PPO: reward model score of sampled answers")
ax.legend()
fig.tight_layout()
fig.savefig(snakemake.output.reward_plot, dpi=100)
with open(snakemake.log[0], "a", encoding="utf-8") as log:
    for h in history:
        log.write(json.dumps(h) + "\n")
    log.write(f"PPO done: {result['updates']} updates on {result['prompts']} prompts -> {out}\n")
