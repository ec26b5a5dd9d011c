"""How training settings are layered: the one home of every rule that says which key a stage trains with.

An SFT experiment trains with `train`, then its own overrides (a named experiment's block, or a grid point);
a preference stage with those, then PREF_LORA, then its own block (`preference.train` for dpo/kto,
`preference.reward_model.train` for rm); PPO's policy adapter with the PPO_LORA_KEYS of the dpo/kto layers,
and PPOConfig with PPO_DEFAULTS under `preference.ppo.train`. In every LLaMA-Factory layer a key set to null
removes the key (LLaMA-Factory then uses its own default), so a config layered over another can drop one.

Imported at DAG-parse time and by the config checks, so nothing heavy is imported here.
"""

from __future__ import annotations

import copy

import jsonschema
from jsonschema import validators

from conch.preference.stages import PPO_DEFAULTS, PPO_LORA_KEYS

# The stages train a LoRA adapter on the SFT model whatever the experiment's finetuning_type: a full or
# freeze SFT model is aligned the same way as a merged LoRA one.
PREF_LORA = {"finetuning_type": "lora"}


def without_nulls(block):
    """A block of training keys without the keys set to null; anything but a dict is returned as it is."""
    if not isinstance(block, dict):
        return block
    return {key: value for key, value in block.items() if value is not None}


def layer(*blocks: dict) -> dict:
    """The blocks merged in order (a later one wins), then every key left at null dropped.

    Nulls are dropped last, not per block: a key one block sets and a later block nulls keeps no value, and
    a key one block nulls and a later one sets keeps its first place (the YAML LLaMA-Factory reads keeps
    that order)."""
    merged: dict = {}
    for block in blocks:
        merged.update(block or {})
    return without_nulls(merged)


def stage_blocks(config: dict) -> dict[str, dict]:
    """{"dpo": preference.train, "rm": preference.reward_model.train}: the preference stages' own training
    blocks, as written (nulls kept), where the config has them as dicts."""
    pref = config.get("preference") if isinstance(config.get("preference"), dict) else {}
    rm = pref.get("reward_model") if isinstance(pref.get("reward_model"), dict) else {}
    blocks = {"dpo": pref.get("train"), "rm": rm.get("train")}
    return {name: block for name, block in blocks.items() if isinstance(block, dict)}


def without_train_nulls(config: dict) -> dict:
    """A copy of config whose training blocks (`train` and the preference stages') have their nulls dropped:
    what the schema checks and fills in, since a null stands for "no value" whatever the key's type.
    Experiments and grid points keep theirs; layered, they remove the key from that experiment alone."""
    config = copy.deepcopy(config)
    if isinstance(config.get("train"), dict):
        config["train"] = without_nulls(config["train"])
    pref = config.get("preference") if isinstance(config.get("preference"), dict) else {}
    if isinstance(pref.get("train"), dict):
        pref["train"] = without_nulls(pref["train"])
    rm = pref.get("reward_model") if isinstance(pref.get("reward_model"), dict) else {}
    if isinstance(rm.get("train"), dict):
        rm["train"] = without_nulls(rm["train"])
    return config


def sft_layers(config: dict, overrides: dict) -> tuple[dict, ...]:
    """The blocks an experiment's SFT keys are layered from: `train` (nulls already dropped), its overrides."""
    return (without_nulls(config.get("train") or {}), overrides)


def stage_layers(sft: tuple[dict, ...], stage_block: dict) -> tuple[dict, ...]:
    """A preference stage's blocks: the experiment's, PREF_LORA, the stage's own (its nulls remove a key)."""
    return (*sft, PREF_LORA, stage_block)


def ppo_lora(train: dict) -> dict:
    """The keys of the dpo/kto layers that shape PPO's policy adapter and prompt length; only these reach
    PPO, so tuning DPO's learning rate does not rerun it."""
    return {key: train[key] for key in PPO_LORA_KEYS if key in train}


def ppo_config(block: dict) -> dict:
    """PPOConfig keys: conch's defaults, then `preference.ppo.train` (passed to TRL as written, nulls too)."""
    return {**PPO_DEFAULTS, **block}


def fill_defaults(config: dict, schema: dict) -> dict:
    """config with the schema's defaults filled in, as snakemake's `validate(config, schema)` does (a
    property's default is set where the key is absent, then validation goes on into it); raises
    jsonschema.ValidationError on the first error. The defaults are copied: the schema stays as loaded."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    filling = validators.extend(base, {"properties": set_defaults})
    filling(schema).validate(config)
    return config
