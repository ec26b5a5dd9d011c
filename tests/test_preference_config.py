"""Preference branch config: the shipped examples are valid; a branch missing what it needs fails at once."""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml
from conftest import REPO, default_config, make_workdir, planned_jobs, snakemake

from conch.llamafactory.lf import prepare_output_dir
from conch.preference.stages import merge_base, stage_args
from conch.workflow.config import problems
from conch.workflow.plan import load_schema

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def layered(*files: str) -> dict:
    """config/config.yaml with each --configfile merged over it, as snakemake merges them (dicts deeply)."""

    def merge(base, extra):
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = copy.deepcopy(value)
        return base

    cfg = default_config()
    for name in files:
        merge(cfg, yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8")))
    return cfg


def test_default_config_leaves_the_branch_off():
    assert not (default_config().get("preference") or {}).get("methods")


@pytest.mark.parametrize("files", [["dpo.yaml"], ["ppo.yaml"], ["dpo.yaml", "ppo.yaml"]])
def test_example_configs_are_valid(files):
    assert problems(layered(*files), SCHEMA) == []


def ppo_config(**ppo) -> dict:
    cfg = layered("ppo.yaml")
    cfg["preference"]["ppo"] = {"train": {"total_episodes": 8}, **ppo}
    return cfg


def test_ppo_without_a_reward_model_says_what_to_add():
    found = problems(ppo_config(prompts="preference"), SCHEMA)
    assert len(found) == 1
    assert found[0].startswith("config key preference.ppo.reward_model: PPO needs a reward model")
    assert "add `reward_model: train`" in found[0]


def test_ppo_without_prompts_says_what_to_add():
    found = problems(ppo_config(reward_model="train"), SCHEMA)
    assert len(found) == 1
    assert found[0].startswith("config key preference.ppo.prompts: PPO needs prompts")
    assert "`prompts: preference`" in found[0] and "`prompts: sft`" in found[0]


def test_ppo_reward_model_path_must_be_a_model(tmp_path):
    found = problems(ppo_config(reward_model=str(tmp_path), prompts="sft"), SCHEMA)
    assert found == [
        f"config key preference.ppo.reward_model: {str(tmp_path)!r} is neither `train` nor a model "
        "directory with a config.json"
    ]
    (tmp_path / "config.json").write_text("{}")
    assert problems(ppo_config(reward_model=str(tmp_path), prompts="sft"), SCHEMA) == []


def test_dpo_without_data_says_what_to_add():
    cfg = layered("dpo.yaml")
    del cfg["preference"]["data"]["raw"]
    (found,) = problems(cfg, SCHEMA)
    assert found.startswith(
        "config key preference.data.raw: preference.methods ['dpo'] are trained and evaluated"
    )


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("methods", ["dpo", "rlhf"], "config key preference.methods.1: 'rlhf' is not one of"),
        ("serve", "kto", "config key preference.serve: 'kto' is not among preference.methods ['dpo']"),
        ("start_from", "base", "config key preference.start_from: 'base' is not one of"),
        (
            "train",
            {"pref_betta": 0.1},
            "config key preference.train.pref_betta: not a LLaMA-Factory training argument; did you mean 'pref_beta'?",
        ),
        ("train", {"ref_model": "x"}, "config key preference.train.ref_model: set by the workflow"),
        (
            "ppo",
            {"train": {"kl_coeff": 0.1}},
            "config key preference.ppo.train.kl_coeff: not a TRL PPOConfig argument; did you mean 'kl_coef'?",
        ),
        (
            "ppo",
            {"train": {"output_dir": "x"}},
            "config key preference.ppo.train.output_dir: set by the workflow",
        ),
        (
            "eval",
            {"max_sample": 3},
            "config key preference.eval.max_sample: unknown key; did you mean 'max_samples'?",
        ),
    ],
)
def test_bad_preference_values_name_the_key(path, value, expected):
    cfg = layered("dpo.yaml")
    cfg["preference"][path] = value
    found = problems(cfg, SCHEMA)
    assert any(f.startswith(expected) for f in found), found


def test_workflow_refuses_ppo_without_reward_model_before_any_job(tmp_path):
    cfg = ppo_config(prompts="preference")
    workdir = make_workdir(tmp_path, cfg)
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "config key preference.ppo.reward_model: PPO needs a reward model" in proc.stderr + proc.stdout
    assert not (workdir / "results").exists()


def test_stage_arguments_wire_the_reference_model():
    common = dict(
        sft_model="results/merged/e/model",
        base_model="base",
        sft_adapter="results/adapters/e",
        dataset="p",
        dataset_dir="results/data/p",
        template="qwen",
        output_dir="out",
        with_val=True,
    )
    train = {"pref_loss": "sigmoid", "eval_strategy": "epoch"}
    merged = stage_args("dpo", train, start_from="merged", **common)
    assert merged["model_name_or_path"] == "results/merged/e/model" and "ref_model" not in merged
    assert merged["dataset"] == "p_train" and merged["eval_dataset"] == "p_val" and merged["stage"] == "dpo"
    on_adapter = stage_args("kto", train, start_from="adapter", **common)
    assert on_adapter["model_name_or_path"] == "base"
    assert on_adapter["adapter_name_or_path"] == on_adapter["ref_model_adapters"] == "results/adapters/e"
    assert on_adapter["ref_model"] == "base"
    assert on_adapter["dataset"] == "p_kto_train" and on_adapter["eval_dataset"] == "p_kto_val"
    # The reward model always starts from the merged SFT model.
    rm = stage_args("rm", train, start_from="adapter", **{**common, "with_val": False})
    assert rm["model_name_or_path"] == "results/merged/e/model" and "eval_strategy" not in rm
    assert merge_base("dpo", "adapter", sft_model="m", base_model="b") == "b"
    assert merge_base("dpo", "merged", sft_model="m", base_model="b") == "m"


def test_checkpoints_resume_only_for_the_same_run(tmp_path):
    data, model, out = tmp_path / "train.jsonl", tmp_path / "model", tmp_path / "out"
    data.write_text("{}\n")
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"1")

    def prepare(saved=True, **kwargs):
        checkpoint = out / "checkpoint-10"
        checkpoint.mkdir(parents=True, exist_ok=True)
        if saved:  # the Trainer writes trainer_state.json last
            (checkpoint / "trainer_state.json").write_text('{"global_step": 10}')
        prepare_output_dir(out, {"stage": "dpo"}, [str(data)], [str(model)], **kwargs)
        return checkpoint.exists()

    assert not prepare()  # no stamp yet: a checkpoint of unknown origin
    assert prepare()  # the same run again: an interrupted job resumes
    shutil.rmtree(out / "checkpoint-10")
    assert not prepare(saved=False)  # the same run, but killed while saving: resuming would crash
    (model / "model.safetensors").write_bytes(b"22")  # the SFT model was rebuilt at the same path
    assert not prepare()
    assert not prepare(resume=False)  # stage rm never resumes


@pytest.mark.parametrize(
    ("files", "planned", "absent"),
    [
        ([], [], ["prepare_preference", "train_preference", "train_reward_model", "train_ppo"]),
        (["dpo.yaml"], ["train_preference", "merge_preference", "evaluate_preference"], ["train_ppo"]),
        (["ppo.yaml"], ["train_reward_model", "convert_reward_model", "train_ppo"], ["train_preference"]),
    ],
)
def test_each_example_plans_its_own_branch(tmp_path, files, planned, absent):
    cfg = layered(*files)
    workdir = make_workdir(tmp_path, cfg)
    for raw in (cfg.get("preference") or {}).get("data", {}).get("raw", []):
        (workdir / raw).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / raw, workdir / raw)
    jobs = planned_jobs(workdir)
    assert all(jobs.get(rule) == 1 for rule in planned), jobs
    assert not set(absent) & set(jobs), jobs
