"""Rule train_ppo: PPO with TRL's PPOTrainer, the SFT model, a new LoRA adapter, the reward model's scores on
its answers."""

from __future__ import annotations

import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from conch.cluster import gpus  # noqa: E402
from conch.errors import JobFailed  # noqa: E402
from conch.jobs.files import as_paths, read_jsonl, write_jsonl  # noqa: E402
from conch.jobs.progress import Progress, trainer_callback  # noqa: E402
from conch.llamafactory import lf  # noqa: E402
from conch.preference.ppo import train_ppo  # noqa: E402
from conch.preference.prepare import prompts  # noqa: E402


def run(input, output, params, log, wildcards, resources, config):
    _gpus = gpus.assign_for(resources, config)  # held until the job ends; set before CUDA starts
    p = params
    train_prompts = prompts([r for f in as_paths(input.prompts) for r in read_jsonl(f)])
    train_prompts = train_prompts[: p.max_prompts or None]
    eval_prompts = prompts(read_jsonl(input.eval_prompts))
    if not train_prompts:
        raise JobFailed(f"train_ppo: no prompts in {input.prompts}")
    out = Path(output.model).parent
    ppo_args = dict(p.ppo)  # the plan layered them (PPO_DEFAULTS under preference.ppo.train)
    # Kept beside the output, like LLaMA-Factory's YAML: what this PPO run was given.
    lf.write_yaml(
        {
            "policy": input.sft_model,
            "reward_model": input.reward_model,
            "prompts": len(train_prompts),
            "ppo": ppo_args,
        },
        output.ppo_yaml,
    )
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"PPO on {len(train_prompts)} prompts, reward model {input.reward_model}\n")
    # TRL prints its progress; keep it in the rule's log with the rest, and show steps on the terminal (the
    # Progress keeps the real stderr: it is made before the redirection).
    progress = Progress(f"train_ppo {wildcards.experiment}")
    with open(log, "a", encoding="utf-8") as fh, redirect_stdout(fh), redirect_stderr(fh):
        result = train_ppo(
            policy_path=input.sft_model,
            reward_path=input.reward_model,
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
    write_jsonl(output.ppo_log, history)
    reward_plot(history, output.reward_plot)
    with open(log, "a", encoding="utf-8") as fh:
        for h in history:
            fh.write(json.dumps(h) + "\n")
        fh.write(f"PPO done: {result['updates']} updates on {result['prompts']} prompts -> {out}\n")


def reward_plot(history: list[dict], path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    episodes = [h["episode"] for h in history]
    ax.plot(episodes, [h["objective/scores"] for h in history], marker="o", label="reward")
    ax.plot(episodes, [h["objective/rlhf_reward"] for h in history], label="reward - KL penalty")
    ax.set_xlabel("episode (prompts answered)")
    ax.set_title("PPO: reward model score of sampled answers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
