"""`llamafactory-cli train` arguments for the preference stages (dpo, kto, rm), built on conch.llamafactory.lf.train_args.

Where each stage starts, which is where users of LLaMA-Factory most often go wrong:

- dpo/kto, start_from merged: the merged SFT model with a new LoRA adapter; the reference model is the same
  model with the adapter switched off, i.e. exactly the SFT model. The adapter merges into the SFT model.
- dpo/kto, start_from adapter: the base model with the SFT adapter, training on (the adapter goes on
  learning); the reference is base + SFT adapter, frozen (`ref_model` + `ref_model_adapters`). Without that
  reference LLaMA-Factory would compare against the bare base model. The adapter merges into the base model.
- rm: the merged SFT model with a new LoRA adapter and a value head, on the same pairs as DPO.
"""

from __future__ import annotations

from conch.llamafactory import lf

STAGES = ("dpo", "kto", "rm")
# Keys conch sets for the preference stages, on top of those lf.RESERVED_TRAIN_KEYS lists.
RESERVED_PREF_KEYS = lf.RESERVED_TRAIN_KEYS | {
    "ref_model",
    "ref_model_adapters",
    "reward_model",
    "reward_model_adapters",
    "reward_model_type",
    "create_new_adapter",
}

# PPOConfig keys conch derives from the DAG and the tokenizer.
RESERVED_PPO_KEYS = frozenset(
    {"output_dir", "stop_token", "stop_token_id", "sft_model_path", "reward_model_path"}
)
# Short CPU-friendly defaults; every PPOConfig key may be overridden from config (preference.ppo.train).
PPO_DEFAULTS = {
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "num_mini_batches": 1,
    "num_ppo_epochs": 4,
    "num_train_epochs": 1,
    "learning_rate": 3.0e-5,
    "response_length": 32,
    "temperature": 0.7,
    "kl_coef": 0.05,
    "missing_eos_penalty": 1.0,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "num_sample_generations": 0,
    "seed": 42,
}


# The keys of `train` that shape PPO's policy adapter and prompt length (conch.workflow.layering.ppo_lora).
PPO_LORA_KEYS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target", "cutoff_len")


def stage_args(
    stage: str,
    train: dict,
    *,
    start_from: str,
    sft_model: str,
    base_model: str,
    sft_adapter: str,
    dataset: str,
    dataset_dir: str,
    template: str,
    output_dir: str,
    with_val: bool,
) -> dict:
    if stage not in STAGES:
        raise ValueError(f"unknown preference stage {stage!r}; one of {STAGES}")
    on_adapter = stage != "rm" and start_from == "adapter"
    args = lf.train_args(
        train,
        base_model=base_model if on_adapter else sft_model,
        dataset=f"{dataset}_kto" if stage == "kto" else dataset,
        dataset_dir=dataset_dir,
        template=template,
        output_dir=output_dir,
        stage=stage,
    )
    if on_adapter:
        args.update(adapter_name_or_path=sft_adapter, ref_model=base_model, ref_model_adapters=sft_adapter)
    if with_val and lf.train_value(args, "eval_strategy") != "no":
        args["eval_dataset"] = f"{dataset}_kto_val" if stage == "kto" else f"{dataset}_val"
    else:
        args.pop("eval_strategy", None)
    return args


def merge_base(stage: str, start_from: str, *, sft_model: str, base_model: str) -> str:
    """The model an adapter trained by `stage` merges into."""
    return base_model if stage != "rm" and start_from == "adapter" else sft_model
