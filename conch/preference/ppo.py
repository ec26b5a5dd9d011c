"""PPO with TRL's own trainer (trl.PPOTrainer): policy, reference, reward and value models.

Why TRL and not `llamafactory-cli train` with `stage: ppo`: LLaMA-Factory 0.9.5's PPO refuses to start
unless trl<=0.9.6 is installed, while its dpo/kto/rm stages need the trl 0.24 that the rest of conch pins.
TRL 0.24's PPOTrainer is the maintained implementation of the same algorithm, runs in the same training env,
and takes the reward model that `stage: rm` trained once it is converted (conch.preference.reward).

The models: the policy is the SFT model with a new LoRA adapter (LoRA settings from the SFT `train` keys);
the reference is that policy with the adapter disabled (so: the SFT model, no second copy in memory); the
reward model is the converted `stage: rm` model, frozen, read where LLaMA-Factory trained it
(RewardAtTurnEnd); the value model starts as a copy of the reward model and is trained.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from conch.llamafactory import lf
from conch.model.modeling import render
from conch.preference.reward import RewardAtTurnEnd, load_reward_model
from conch.preference.scoring import answer_suffix


def lora_config(train: dict):
    """The PPO policy's LoRA adapter, from the same LLaMA-Factory keys the SFT adapter used."""
    from peft import LoraConfig

    target = lf.train_value(train, "lora_target")
    targets = "all-linear" if target == "all" else [t.strip() for t in str(target).split(",")]
    extra = train.get("additional_target")
    rank = lf.train_value(train, "lora_rank")
    return LoraConfig(
        r=rank,
        # LLaMA-Factory's FinetuningArguments: lora_alpha defaults to twice the rank.
        lora_alpha=lf.train_value(train, "lora_alpha") or 2 * rank,
        lora_dropout=lf.train_value(train, "lora_dropout"),
        target_modules=targets,
        modules_to_save=[t.strip() for t in extra.split(",")] if extra else None,
        task_type="CAUSAL_LM",
    )


def turn_end_tail(tokenizer) -> list[int]:
    """Token ids the template writes after the stop (eos) token, e.g. qwen's "\\n" after "<|im_end|>"."""
    suffix = answer_suffix(tokenizer)
    eos = tokenizer.eos_token or ""
    tail = suffix[suffix.index(eos) + len(eos) :] if eos and eos in suffix else ""
    return tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []


def prompt_dataset(tokenizer, contexts: list[list[dict]], max_prompt_tokens: int):
    from datasets import Dataset

    rows = [tokenizer(render(tokenizer, c), add_special_tokens=False)["input_ids"] for c in contexts]
    rows = [r[-max_prompt_tokens:] for r in rows]
    return Dataset.from_dict({"input_ids": rows})


def train_ppo(
    *,
    policy_path: str,
    reward_path: str,
    train_contexts: list[list[dict]],
    eval_contexts: list[list[dict]],
    out_dir: str | Path,
    lora_train: dict,
    ppo_args: dict,
    max_prompt_tokens: int,
    callbacks: list | None = None,
) -> dict:
    """Train the policy's adapter with PPO; save it to out_dir/adapter and the merged model to out_dir/model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import PPOConfig, PPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    out = Path(out_dir)
    args = dict(ppo_args)  # complete: conch.workflow.layering.ppo_config
    if not torch.cuda.is_available():
        args["bf16"] = args["fp16"] = False
    torch.manual_seed(args["seed"])
    tokenizer = AutoTokenizer.from_pretrained(policy_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    reward, reward_tokenizer = load_reward_model(reward_path)
    if reward_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"reward model {reward_path} and policy {policy_path} use different tokenizers")
    value, _ = load_reward_model(reward_path)
    train_set = prompt_dataset(tokenizer, train_contexts, max_prompt_tokens)
    eval_set = prompt_dataset(tokenizer, eval_contexts or train_contexts[:1], max_prompt_tokens)
    batch = args["per_device_train_batch_size"] * args["gradient_accumulation_steps"]
    if len(train_set) < batch:
        raise ValueError(
            f"{len(train_set)} PPO prompts are fewer than one batch ({batch}); lower the batch size"
        )
    config = PPOConfig(
        output_dir=str(out / "trainer"),
        stop_token="eos",
        per_device_eval_batch_size=min(len(eval_set), args["per_device_train_batch_size"]),
        **args,
    )
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=None,
        reward_model=RewardAtTurnEnd(reward, turn_end_tail(tokenizer), tokenizer.pad_token_id),
        value_model=value,
        train_dataset=train_set,
        eval_dataset=eval_set,
        peft_config=lora_config(lora_train),
        callbacks=callbacks,
    )
    trainer.train()
    history = [entry for entry in trainer.state.log_history if "objective/scores" in entry]
    policy_model = trainer.accelerator.unwrap_model(trainer.model).policy
    policy_model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    merged = policy_model.merge_and_unload()
    merged.save_pretrained(out / "model", safe_serialization=True)
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(out / "model")
    source_generation = Path(policy_path) / "generation_config.json"
    if source_generation.exists():
        (out / "model" / "generation_config.json").write_bytes(source_generation.read_bytes())
    return {"prompts": len(train_set), "updates": len(history), "log_history": history, "ppo_args": args}
