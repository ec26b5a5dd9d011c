"""Config checks for the preference branch that a JSON schema cannot say, run before any job.

A PPO branch without a reward model or without prompts, or a DPO branch without preference data, would
otherwise fail only when its rule starts (possibly after an hour of SFT); here it fails at once, with a
message naming the key to add. Training keys are checked against what LLaMA-Factory (dpo/kto/rm) and
TRL's PPOConfig (ppo) accept, read from their source as conch.llamafactory.lf does, so a typo is caught too.
"""

from __future__ import annotations

import functools
from pathlib import Path

from conch.errors import did_you_mean
from conch.llamafactory import lf
from conch.preference.stages import RESERVED_PPO_KEYS, RESERVED_PREF_KEYS


@functools.cache
def known_ppo_keys() -> frozenset[str] | None:
    """Every argument TRL's PPOConfig accepts (its own fields plus transformers' TrainingArguments)."""
    trl_root, hf_root = lf.package_dir("trl"), lf.package_dir("transformers")
    if trl_root is None or hf_root is None:
        return None
    # PPOConfig extends OnPolicyConfig (trainer/utils.py), which extends TrainingArguments.
    files = [
        trl_root / "trainer" / "ppo_config.py",
        trl_root / "trainer" / "utils.py",
        hf_root / "training_args.py",
    ]
    return frozenset().union(*(lf.dataclass_fields(f) for f in files if f.exists()))


def _keys(block: object, where: str, reserved: frozenset, known: frozenset | None, what: str) -> list[str]:
    found = []
    for key in block if isinstance(block, dict) else ():
        if key in reserved:
            found.append(f"config key {where}.{key}: set by the workflow from the DAG; remove it")
        elif known is not None and key not in known:
            found.append(f"config key {where}.{key}: not a {what} argument{did_you_mean(key, known)}")
    return found


def problems(config: dict) -> list[str]:
    pref = config.get("preference")
    if not isinstance(pref, dict):
        return []  # absent (branch off), or the schema check names the wrong type
    methods = pref.get("methods") or []
    if not isinstance(methods, list):
        return []
    data = pref.get("data") if isinstance(pref.get("data"), dict) else {}
    ppo = pref.get("ppo") if isinstance(pref.get("ppo"), dict) else {}
    reward_model = pref.get("reward_model") if isinstance(pref.get("reward_model"), dict) else {}
    found = _keys(
        pref.get("train"),
        "preference.train",
        RESERVED_PREF_KEYS,
        lf.known_train_keys(),
        "LLaMA-Factory training",
    )
    found += _keys(
        reward_model.get("train"),
        "preference.reward_model.train",
        RESERVED_PREF_KEYS,
        lf.known_train_keys(),
        "LLaMA-Factory training",
    )
    found += _keys(
        ppo.get("train"), "preference.ppo.train", RESERVED_PPO_KEYS, known_ppo_keys(), "TRL PPOConfig"
    )
    for where, block in (
        ("preference.train", pref.get("train")),
        ("preference.reward_model.train", reward_model.get("train")),
    ):
        kind = block.get("finetuning_type") if isinstance(block, dict) else None
        if kind not in (None, "lora"):
            found.append(
                f"config key {where}.finetuning_type: the preference stages train a LoRA adapter on the SFT "
                f"model (of any finetuning_type), not {kind}; remove the key"
            )
    serve = pref.get("serve")
    if isinstance(serve, str) and serve != "sft" and serve not in methods:
        found.append(
            f"config key preference.serve: {serve!r} is not among preference.methods {methods}; "
            f"add it to methods or serve one of {[*methods, 'sft']}"
        )
    if not methods:
        return found
    if not data.get("raw"):
        found.append(
            f"config key preference.data.raw: preference.methods {methods} are trained and evaluated on "
            "preference data (held-out pairs); add preference.data.raw: [files of pairs (chosen/rejected) "
            "or KTO records] (docs/preference.md)"
        )
    if "ppo" in methods:
        found += _ppo_problems(ppo)
    return found


def _ppo_problems(ppo: dict) -> list[str]:
    found = []
    reward_model = ppo.get("reward_model")
    if reward_model is None:
        found.append(
            "config key preference.ppo.reward_model: PPO needs a reward model to score its answers; add "
            "`reward_model: train` (trained with `stage: rm` on preference.data) or the path of a reward "
            "model directory (AutoModelForSequenceClassification)"
        )
    elif reward_model != "train" and not (Path(str(reward_model)) / "config.json").is_file():
        found.append(
            f"config key preference.ppo.reward_model: {reward_model!r} is neither `train` nor a model "
            "directory with a config.json"
        )
    if ppo.get("prompts") is None:
        found.append(
            "config key preference.ppo.prompts: PPO needs prompts to answer; add `prompts: preference` (the "
            "prompts of preference.data's train split) or `prompts: sft` (those of the SFT train split)"
        )
    return found
