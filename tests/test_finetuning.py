"""LoRA, QLoRA, full and freeze fine-tuning side by side in one run; null drops any training key."""

from __future__ import annotations

import copy
import csv
import json
import shutil

import pytest
import yaml
from conftest import REPO, default_config, make_workdir, planned_jobs, snakemake, tiny_config

from conch.workflow.config import problems
from conch.workflow.layering import without_train_nulls
from conch.workflow.plan import load_schema

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
EXAMPLE = yaml.safe_load((REPO / "config" / "full.yaml").read_text(encoding="utf-8"))


# ---- null drops a training key, whatever its type ------------------------------------------------------
def nulls_config() -> dict:
    cfg = copy.deepcopy(default_config())
    cfg["train"].update(lora_rank=None, finetuning_type=None, learning_rate=None)
    cfg["experiments"] = {"default": {}, "short": {"num_train_epochs": None, "cutoff_len": None}}
    cfg["grid"] = {"lora_alpha": [None, 8]}
    cfg["preference"] = {
        "methods": ["dpo"],
        "data": {"raw": ["data/raw/magic_conch_pref.jsonl"]},
        "train": {"lora_rank": None, "per_device_train_batch_size": None},
    }
    return cfg


def test_a_training_key_set_to_null_is_dropped_whatever_its_type(tmp_path):
    cfg = nulls_config()
    assert problems(cfg, SCHEMA) == []
    dropped = without_train_nulls(cfg)
    assert not {"lora_rank", "finetuning_type", "learning_rate"} & set(dropped["train"])
    assert "lora_rank" not in dropped["preference"]["train"]
    # Experiments keep theirs: there a null removes the key from that experiment alone.
    assert dropped["experiments"]["short"] == {"num_train_epochs": None, "cutoff_len": None}
    # The workflow parses it (the schema's own check and defaults run after the nulls are gone).
    workdir = make_workdir(tmp_path, cfg)
    (workdir / "data/raw/magic_conch_pref.jsonl").write_bytes(
        (REPO / "data/raw/magic_conch_pref.jsonl").read_bytes()
    )
    jobs = planned_jobs(workdir)
    assert jobs["train_adapter"] == 4 and jobs["train_preference"] == 4, jobs


def test_a_wrong_type_is_still_refused():
    cfg = copy.deepcopy(default_config())
    cfg["train"]["lora_rank"] = "sixteen"
    assert any(p.startswith("config key train.lora_rank: 'sixteen'") for p in problems(cfg, SCHEMA))


# ---- checks before any job ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "freeze"])
def test_quantization_is_refused_without_lora(kind):
    cfg = copy.deepcopy(default_config())
    cfg["experiments"] = {"default": {}, "big": {"finetuning_type": kind, "quantization_bit": 4}}
    (found,) = problems(cfg, SCHEMA)
    assert found.startswith(f"config key train.quantization_bit: experiment 'big' trains {kind}")
    cfg["experiments"]["big"].update(finetuning_type="lora", eval_strategy="no")  # QLoRA on this CPU
    assert problems(cfg, SCHEMA) == []


def test_qlora_with_evaluation_on_the_cpu_is_refused_before_any_job():
    """bitsandbytes' CPU 4-bit matmul fails on biased layers while evaluating: refused up front, not half-way."""
    cfg = copy.deepcopy(default_config())
    cfg["experiments"] = {"default": {}, "q": {"quantization_bit": 4}}
    assert cfg["train"].get("eval_strategy", "no") != "no"
    assert any(p.startswith("config key train.eval_strategy: experiment 'q'") for p in problems(cfg, SCHEMA))
    cfg["experiments"]["q"]["eval_strategy"] = "no"
    assert not any("eval_strategy" in p for p in problems(cfg, SCHEMA))
    cfg["experiments"]["q"].pop("eval_strategy")
    cfg["compute"] = {**cfg.get("compute", {}), "gpus": 1}
    assert not any("eval_strategy" in p for p in problems(cfg, SCHEMA))


def test_preference_on_a_full_model_cannot_continue_an_sft_adapter():
    cfg = copy.deepcopy(default_config())
    cfg["train"]["finetuning_type"] = "full"
    cfg["preference"] = {"methods": ["dpo"], "data": {"raw": ["x.jsonl"]}, "start_from": "adapter"}
    (found,) = problems(cfg, SCHEMA)
    assert found.startswith("config key preference.start_from: `adapter` goes on training the SFT LoRA")
    cfg["preference"].update(start_from="merged", train={"finetuning_type": "full"})
    (found,) = problems(cfg, SCHEMA)
    assert found.startswith("config key preference.train.finetuning_type: the preference stages train a LoRA")


def test_example_config_is_valid_and_a_full_experiment_plans_no_merge(tmp_path):
    cfg = copy.deepcopy(default_config())
    cfg["experiments"].update(EXAMPLE["experiments"])
    assert problems(cfg, SCHEMA) == []
    cfg["experiments"] = {"full": EXAMPLE["experiments"]["full"]}
    cfg["preference"] = {"methods": ["dpo"], "data": {"raw": ["data/raw/magic_conch_pref.jsonl"]}}
    workdir = make_workdir(tmp_path, cfg)
    (workdir / "data/raw/magic_conch_pref.jsonl").write_bytes(
        (REPO / "data/raw/magic_conch_pref.jsonl").read_bytes()
    )
    jobs = planned_jobs(workdir)
    # DPO starts from the full-trained model: nothing trains an adapter or merges one for the SFT step.
    assert jobs["train_model"] == jobs["train_preference"] == jobs["serve"] == 1, jobs
    assert not {"train_adapter", "merge_adapter"} & set(jobs), jobs


# ---- the real run: LoRA (the tiny run's), QLoRA, full and freeze on the same data -----------------------
EXPERIMENTS = {
    "default": {},
    # 4-bit kernels are slow on CPU: fewer epochs than the others, enough to see it learn. No evaluation
    # during training: bitsandbytes 0.50.2's CPU 4-bit matmul fails there on layers with a bias (Qwen2's
    # q/k/v projections: "a view of a leaf Variable ... in-place operation"; docs/finetuning.md).
    "qlora": {"quantization_bit": 4, "num_train_epochs": 2, "eval_strategy": "no"},
    "full": EXAMPLE["experiments"]["full"],
    "freeze": EXAMPLE["experiments"]["freeze"],
}


@pytest.fixture(scope="module")
def finetuning_run(tiny_run, tmp_path_factory):
    """The tiny run's data, base and LoRA experiment reused; the full experiment served."""
    workdir = tmp_path_factory.mktemp("finetuning_run") / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    cfg = tiny_config()
    cfg["rag"]["enabled"] = False
    cfg["experiments"] = EXPERIMENTS
    cfg["serve"]["experiment"] = "full"
    make_workdir(workdir, cfg)
    snakemake(workdir)
    return workdir


@pytest.mark.slow
def test_full_and_freeze_train_the_model_itself_and_nothing_merges_it(finetuning_run):
    for name in ("full", "freeze"):
        out = finetuning_run / "results/trained" / name
        args = yaml.safe_load((out / "train_config.yaml").read_text())
        assert args["finetuning_type"] == name and args["output_dir"] == f"results/trained/{name}"
        model = out / "model"
        assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
            f.name for f in model.iterdir()
        }
        assert (out / "trainer_log.jsonl").exists() and not (model / "trainer_log.jsonl").exists()
        assert not list(out.glob("checkpoint-*")), "a finished full run keeps no checkpoint"
        assert not (finetuning_run / "results/merged" / name).exists()
        assert not (finetuning_run / "results/adapters" / name).exists()
        metrics = json.loads((finetuning_run / "results/eval" / name / "metrics.json").read_text())
        assert metrics["tuned"]["perplexity"] < metrics["base"]["perplexity"] / 10, metrics
        manifest = json.loads((finetuning_run / "results/manifests" / f"{name}.json").read_text())
        assert manifest["finetuning_type"] == name
        assert set(manifest["trained_weights"]["files"]) == {"model.safetensors"}
    # freeze trained the last layer (and the embeddings), not the first: its weights are the base's.
    from safetensors.torch import load_file

    base = load_file(finetuning_run / "results/base_model/scratch/model/model.safetensors")
    frozen = load_file(finetuning_run / "results/trained/freeze/model/model.safetensors")
    full = load_file(finetuning_run / "results/trained/full/model/model.safetensors")
    first = "model.layers.0.mlp.up_proj.weight"
    assert frozen[first].equal(base[first]) and not full[first].equal(base[first])
    assert not frozen["model.layers.1.mlp.up_proj.weight"].equal(base["model.layers.1.mlp.up_proj.weight"])


@pytest.mark.slow
def test_qlora_trains_quantized_and_merges_into_the_full_precision_base(finetuning_run):
    args = yaml.safe_load((finetuning_run / "results/adapters/qlora/train_config.yaml").read_text())
    assert args["quantization_bit"] == 4 and args["finetuning_type"] == "lora"
    assert (
        "Quantizing model to 4 bit with bitsandbytes"
        in (finetuning_run / "logs/train_adapter/qlora.log").read_text()
    )
    check = json.loads((finetuning_run / "results/merged/qlora/merge_check.json").read_text())
    assert check["passed"]
    metrics = json.loads((finetuning_run / "results/eval/qlora/metrics.json").read_text())
    assert metrics["tuned"]["loss"] < metrics["base"]["loss"], metrics


@pytest.mark.slow
def test_the_comparison_puts_quality_time_and_memory_side_by_side(finetuning_run):
    with (finetuning_run / "results/compare/experiments.csv").open(encoding="utf-8") as fh:
        rows = {row["experiment"]: row for row in csv.DictReader(fh)}
    assert {name: rows[name]["finetuning_type"] for name in EXPERIMENTS} == {
        "default": "lora",
        "qlora": "lora",
        "full": "full",
        "freeze": "freeze",
    }
    for row in rows.values():
        assert float(row["tuned.loss"]) > 0 and float(row["train_wall_s"]) > 0
        assert float(row["train_peak_rss_mb"]) > 100, row
    assert (finetuning_run / "results/compare/training_cost.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_full_model_is_served_as_a_merged_one_is(finetuning_run):
    manifest = json.loads((finetuning_run / "results/serve/full/manifest.json").read_text())
    assert manifest["model_path"] == "results/trained/full/model"
    assert json.loads((finetuning_run / "results/serve/full/smoke_test.json").read_text())["passed"]
    selected = json.loads((finetuning_run / "results/serve/selected.json").read_text())
    assert selected["experiment"] == "full" and selected["finetuning_type"] == "full"
    assert planned_jobs(finetuning_run) == {}
