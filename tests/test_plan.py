"""The plan's layering, case by case: which LLaMA-Factory keys each stage gets, and the YAML written from them.

Every case starts from config/config.yaml, changes what it names, and says what LLaMA-Factory must read (keys
with their values) and what it must not (keys dropped by a null), in the YAML conch writes for that stage."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, default_config

from conch.errors import ConfigError
from conch.llamafactory import lf
from conch.preference.stages import PPO_DEFAULTS, stage_args
from conch.workflow import plan as conch_plan
from conch.workflow.layering import layer
from conch.workflow.plan import load_schema

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
PAIRS = {"raw": ["data/raw/magic_conch_pref.jsonl"]}


def build(**changes) -> conch_plan.Plan:
    cfg = copy.deepcopy(default_config())
    for key, value in changes.items():
        node, *path = key.split("__")
        target = cfg
        for part in [node, *path][:-1]:
            target = target.setdefault(part, {})
        target[[node, *path][-1]] = value
    return conch_plan.build(cfg, SCHEMA, str(REPO))


def sft_yaml(plan, experiment, tmp_path):
    args = lf.train_args(
        plan.sft(experiment).train,
        base_model="results/base_model/scratch/model",
        dataset="magic_conch",
        dataset_dir="results/data/magic_conch",
        template=plan.template,
        output_dir=f"results/adapters/{experiment}",
    )
    return yaml.safe_load(lf.write_yaml(args, tmp_path / "train_config.yaml").read_text(encoding="utf-8"))


def stage_yaml(plan, stage, experiment, tmp_path):
    train = plan.rm_train(experiment) if stage == "rm" else plan.pref_train(experiment)
    args = stage_args(
        stage,
        train,
        start_from=plan.preference.start_from,
        sft_model=plan.tuned_model(experiment),
        base_model="results/base_model/scratch/model",
        sft_adapter=plan.sft_adapter(experiment),
        dataset=plan.preference.pairs_dataset,
        dataset_dir=plan.preference.dir,
        template=plan.template,
        output_dir=f"results/{stage}/{experiment}/adapter",
        with_val=True,
    )
    return yaml.safe_load(lf.write_yaml(args, tmp_path / "train_config.yaml").read_text(encoding="utf-8"))


PREF = {"preference__methods": ["dpo"], "preference__data": PAIRS}
PPO = {
    "preference__methods": ["ppo"],
    "preference__data": PAIRS,
    "preference__ppo": {"reward_model": "train", "prompts": "preference"},
}

# (case, config changes, stage, experiment, keys LLaMA-Factory reads, keys it must not see)
CASES = [
    ("base", {}, "sft", "default", {"stage": "sft", "lora_rank": 16, "cutoff_len": 256}, ()),
    (
        "experiment override",
        {"experiments": {"default": {}, "wide": {"lora_rank": 32}}},
        "sft",
        "wide",
        {"lora_rank": 32, "learning_rate": 5.0e-3},
        (),
    ),
    (
        "grid point",
        {"experiments": {}, "grid": {"learning_rate": [1.0e-4, 5.0e-3]}},
        "sft",
        "lr1e-4",
        {"learning_rate": 1.0e-4, "lora_rank": 16},
        (),
    ),
    (
        "null in train",
        {"train__additional_target": None},
        "sft",
        "default",
        {"lora_rank": 16},
        ("additional_target",),
    ),
    (
        "null in an experiment",
        {"experiments": {"default": {}, "short": {"cutoff_len": None}}},
        "sft",
        "short",
        {"lora_rank": 16},
        ("cutoff_len",),
    ),
    (
        "the other experiment keeps the key",
        {"experiments": {"default": {}, "short": {"cutoff_len": None}}},
        "sft",
        "default",
        {"cutoff_len": 256},
        (),
    ),
    (
        "stage override over the experiment's",
        {**PREF, "preference__train": {"learning_rate": 2.0e-3, "pref_beta": 0.2}},
        "dpo",
        "default",
        {"stage": "dpo", "learning_rate": 2.0e-3, "pref_beta": 0.2, "lora_rank": 16},
        (),
    ),
    (
        "null in a stage block drops the experiment's key there",
        {**PREF, "preference__train": {"additional_target": None}},
        "dpo",
        "default",
        {"stage": "dpo", "lora_rank": 16},
        ("additional_target",),
    ),
    (
        "a full experiment is aligned with a LoRA adapter",
        {**PREF, "train__finetuning_type": "full", "train__additional_target": None},
        "dpo",
        "default",
        {"finetuning_type": "lora", "model_name_or_path": "results/trained/default/model"},
        (),
    ),
    (
        "the reward model's own block",
        {**PPO, "preference__reward_model": {"train": {"lora_rank": 4, "additional_target": None}}},
        "rm",
        "default",
        {"stage": "rm", "lora_rank": 4, "finetuning_type": "lora"},
        ("additional_target",),
    ),
]


@pytest.mark.parametrize(
    ("changes", "stage", "experiment", "reads", "absent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_layering_reaches_llamafactory_yaml(changes, stage, experiment, reads, absent, tmp_path):
    plan = build(**changes)
    written = (
        sft_yaml(plan, experiment, tmp_path)
        if stage == "sft"
        else stage_yaml(plan, stage, experiment, tmp_path)
    )
    assert {k: written.get(k) for k in reads} == reads
    assert not set(absent) & set(written)


def test_ppo_takes_its_defaults_and_the_stage_lora_keys():
    plan = build(**PPO, preference__train={"lora_rank": 8, "learning_rate": 2.0e-3})
    ppo = plan.preference.ppo
    assert ppo.config == PPO_DEFAULTS and ppo.overrides == {}
    plan = build(**{**PPO, "preference__ppo": {**PPO["preference__ppo"], "train": {"learning_rate": 5.0e-4}}})
    assert plan.preference.ppo.config == {**PPO_DEFAULTS, "learning_rate": 5.0e-4}
    assert plan.preference.ppo.overrides == {"learning_rate": 5.0e-4}  # what the rule passes its script
    lora = build(**PPO, preference__train={"lora_rank": 8, "learning_rate": 2.0e-3}).ppo_lora("default")
    assert lora == {
        "lora_rank": 8,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "lora_target": "all",
        "additional_target": "embed_tokens,lm_head",
        "cutoff_len": 256,
    }
    assert plan.preference.stages == {"ppo", "rm"}


def test_a_key_nulled_then_set_again_keeps_its_first_place():
    # The YAML LLaMA-Factory reads keeps the order of `train`, whatever layer set the value last.
    assert list(layer({"a": 1, "b": 2}, {"a": None}, {"a": 3})) == ["a", "b"]
    assert layer({"a": 1}, {"a": None}) == {}


def test_branches_and_paths_follow_the_config():
    plan = build()
    assert conch_plan.branches(plan) == {"rag": True, "preference": False, "gguf": False}
    assert plan.base_manifest == "results/base_model/scratch/manifest.json"
    assert plan.served_model("default") == "results/merged/default/model"
    assert plan.merge_check("default") == ["results/merged/default/merge_check.json"]
    full = build(**PREF, train__finetuning_type="full", train__additional_target=None)
    assert (
        full.tuned_model("default") == "results/trained/default/model" and full.merge_check("default") == []
    )
    assert full.served_model("default") == "results/dpo/default/model"
    assert (
        build(base_model={"source": "hf", "repo_id": "a/b"}).base_manifest
        == "results/base_model/hf/manifest.json"
    )


def test_the_schema_defaults_are_filled_and_the_input_is_left_alone():
    cfg = copy.deepcopy(default_config())
    cfg["train"]["lora_rank"] = None
    del cfg["eval"]
    before = copy.deepcopy(cfg)
    plan = conch_plan.build(cfg, SCHEMA, str(REPO))
    assert cfg == before
    assert plan.eval["max_new_tokens"] == 48 and "lora_rank" not in plan.config["train"]


def test_a_bad_config_is_refused():
    with pytest.raises(ConfigError, match="train.lora_rank"):
        build(train__lora_rank=0)
