"""Experiments: grid expansion and its config checks, selection, then a real 2x2 grid run end to end."""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil

import pytest
import yaml
from conftest import GRID, GRID_WINNER, REPO, default_config, grid_config, make_workdir, planned_jobs

from conch.evaluation.selection import metric_value, select, selection_mode
from conch.workflow.config import problems
from conch.workflow.experiments import all_experiments, expand_grid
from conch.workflow.plan import load_schema

# As the workflow loads it: with the serve settings' part, which ServeSettings defines.
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
GRID_NAMES = {"lr1e-5_ep1", "lr1e-5_ep2", "lr5e-3_ep1", "lr5e-3_ep2"}


# ---- grid expansion -----------------------------------------------------------------------------------
def test_grid_expands_to_readable_stable_names():
    grid = {"lora_rank": [8, 16], "learning_rate": [1.0e-4, 5.0e-4]}
    expanded = expand_grid(grid)
    assert expanded == {
        "lr1e-4_r8": {"learning_rate": 1e-4, "lora_rank": 8},
        "lr1e-4_r16": {"learning_rate": 1e-4, "lora_rank": 16},
        "lr5e-4_r8": {"learning_rate": 5e-4, "lora_rank": 8},
        "lr5e-4_r16": {"learning_rate": 5e-4, "lora_rank": 16},
    }
    # The order keys are written in does not rename anything; adding a value keeps the existing names.
    assert expand_grid(dict(reversed(grid.items()))) == expanded
    assert set(expanded) < set(expand_grid({**grid, "lora_rank": [8, 16, 32]}))


def test_grid_names_are_filesystem_safe():
    names = expand_grid(
        {"lr_scheduler_type": ["cosine", "cosine_with_restarts"], "lora_dropout": [0.05, 0.1], "bf16": [True]}
    )
    assert "bf16-true_drop0.05_sched-cosine" in names
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name), name


def test_grid_adds_to_named_experiments():
    cfg = {"experiments": {"baseline": {}}, "grid": {"lora_rank": [4, 8]}}
    assert list(all_experiments(cfg)) == ["baseline", "r4", "r8"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"grid": {"lora_rnk": [8]}},
            "config key grid.lora_rnk: not a LLaMA-Factory training argument; did you mean 'lora_rank'?",
        ),
        (
            {"grid": {"output_dir": ["x"]}},
            "config key grid.output_dir: set by the workflow; it cannot be swept",
        ),
        ({"grid": {"lora_rank": [8, 0]}}, "config key grid.lora_rank[1]: 0 is less than the minimum of 1"),
        ({"grid": {"lora_rank": 8}}, "config key grid.lora_rank: 8 is not of type 'array'"),
        ({"grid": {"lora_rank": []}}, "config key grid.lora_rank: [] should be non-empty"),
        (
            {"grid": {"learning_rate": ["1e-4"]}},
            "config key grid.learning_rate[0]: '1e-4' is not of type 'number' (YAML reads 1e-4 as text",
        ),
        (
            {"grid": {"lora_rank": [8]}, "experiments": {"r8": {}}},
            "config key grid: expands to experiment(s) 'r8', which `experiments` already names",
        ),
        (
            {"grid": {"lora_rank": [8, 8]}},
            "config key grid: points {'lora_rank': 8} and {'lora_rank': 8} both",
        ),
        ({"experiments": {}}, "config key experiments: no experiments; name one or declare a grid"),
        (
            {"grid": {"lora_rank": [8]}, "serve": {"experiment": "r9"}},
            "config key serve.experiment: 'r9' is not an experiment; experiments: default, r8",
        ),
        (
            {"selection": {"metric": "tuned.loss", "mode": "best"}},
            "config key selection.mode: 'best' is not one of",
        ),
    ],
)
def test_bad_grid_or_selection_is_refused_with_the_key_named(change, expected):
    cfg = copy.deepcopy(default_config())
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if key == "serve" else value
    found = problems(cfg, SCHEMA)
    assert any(p.startswith(expected) for p in found), found


def test_a_valid_grid_and_pin_pass():
    cfg = {**default_config(), "grid": GRID, "serve": {"experiment": GRID_WINNER}}
    assert problems(cfg, SCHEMA) == []


# ---- selection ------------------------------------------------------------------------------------------
def test_selection_picks_by_mode_breaks_ties_by_order_and_skips_nan():
    values = {"a": 1.0, "b": 3.0, "c": 3.0, "d": float("nan"), "e": None}
    best = select(values, "max")
    assert (best["best"], best["ties"], best["ranking"]) == ("b", ["c"], ["b", "c", "a"])
    assert best["unusable"] == ["d", "e"]
    assert select(values, "min")["best"] == "a"
    with pytest.raises(ValueError):
        select({"a": None}, "max")


def test_selection_mode_defaults_to_the_metrics_direction():
    assert selection_mode("tuned.loss") == selection_mode("tuned.perplexity") == "min"
    assert selection_mode("tuned.rouge_l") == "max"
    assert selection_mode("tuned.loss", "max") == "max"


def test_a_missing_metric_names_what_is_there():
    with pytest.raises(KeyError, match=r"no metric 'tuned.rouge'.*found: loss, rouge_l"):
        metric_value({"tuned": {"loss": 1.0, "rouge_l": 2.0}}, "tuned.rouge", "m.json")


# ---- the DAG ------------------------------------------------------------------------------------------
def test_a_grid_plans_one_training_per_point_and_shared_stages_once(tmp_path):
    jobs = planned_jobs(make_workdir(tmp_path, grid_config()))
    assert jobs["train_adapter"] == jobs["merge_adapter"] == jobs["evaluate"] == jobs["run_manifest"] == 4
    assert jobs["prepare_dataset"] == jobs["build_scratch_model"] == jobs["compare_experiments"] == 1
    # The winner is unknown until the comparison has run, so no serve job is planned yet.
    assert "serve" not in jobs and jobs["select_served"] == 1


def test_a_pinned_experiment_is_served_without_waiting_for_the_comparison(tmp_path):
    cfg = grid_config()
    cfg["serve"]["experiment"] = "lr1e-5_ep1"
    jobs = planned_jobs(make_workdir(tmp_path, cfg))
    assert jobs["serve"] == 1, jobs


# ---- the real grid run (conftest.grid_run) ----------------------------------------------------------------
@pytest.mark.slow
def test_grid_run_trains_four_adapters_and_reuses_shared_stages(grid_run, tiny_run):
    adapters = grid_run / "results" / "adapters"
    for name in GRID_NAMES:
        args = yaml.safe_load((adapters / name / "train_config.yaml").read_text())
        assert {k: args[k] for k in GRID} == expand_grid(GRID)[name]
        assert (adapters / name / "adapter_model.safetensors").stat().st_size > 0
    for shared in ("results/base_model/scratch/manifest.json", "results/data/magic_conch/train.jsonl"):
        assert (grid_run / shared).stat().st_mtime == (tiny_run / shared).stat().st_mtime, shared


@pytest.mark.slow
def test_comparison_table_and_winner(grid_run):
    compare = grid_run / "results" / "compare"
    with (compare / "experiments.csv").open(encoding="utf-8") as fh:
        rows = {row["experiment"]: row for row in csv.DictReader(fh)}
    assert set(rows) == GRID_NAMES
    assert {"learning_rate", "num_train_epochs", "tuned.loss", "tuned.rouge_l", "base.loss", "rank"} <= set(
        rows[GRID_WINNER]
    )
    best = json.loads((compare / "best.json").read_text())
    assert (best["metric"], best["mode"], best["best"]) == ("tuned.loss", "min", GRID_WINNER), best
    assert rows[GRID_WINNER]["selected"] == "True" and rows[GRID_WINNER]["rank"] == "1"
    assert best["values"][GRID_WINNER] < min(v for k, v in best["values"].items() if k.startswith("lr1e-5"))
    for row in rows.values():  # what each training cost, from its job's benchmark
        assert float(row["train_wall_s"]) > 0 and float(row["train_peak_rss_mb"]) > 100, row
    for png in ("metric_by_experiment.png", "loss_curves.png", "training_cost.png"):
        assert (compare / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_only_the_winner_is_served(grid_run):
    selected = json.loads((grid_run / "results/serve/selected.json").read_text())
    assert selected["experiment"] == GRID_WINNER and selected["smoke_test_passed"]
    assert selected["reason"] == "best by tuned.loss (min)"
    assert f"results/merged/{GRID_WINNER}/model" in selected["launch_command"]
    served = {p.name for p in (grid_run / "results/serve").iterdir() if p.is_dir()}
    assert served & GRID_NAMES == {GRID_WINNER}


@pytest.mark.slow
def test_run_manifests_trace_each_experiment(grid_run):
    manifests = {
        name: json.loads((grid_run / "results/manifests" / f"{name}.json").read_text()) for name in GRID_NAMES
    }
    for name, m in manifests.items():
        assert m["experiment"] == name and m["overrides"] == expand_grid(GRID)[name]
        assert m["llamafactory_train_yaml"]["output_dir"] == f"results/adapters/{name}"
        assert m["base_model"]["revision"] == "scratch seed 0"
        assert set(m["base_model"]["weights"]["files"]) == {"model.safetensors"}
        assert m["packages"]["torch"] and m["packages"]["llamafactory"] and m["packages"]["python"]
        assert m["finetuning_type"] == "lora"
        assert set(m["trained_weights"]["files"]) == {"adapter_model.safetensors"}
        if (REPO / ".git").exists():  # a source tree without git history records null
            assert re.fullmatch(r"[0-9a-f]{40}", m["code"]["commit"] or ""), m["code"]
        assert "HF_TOKEN" not in json.dumps(m)
    assert len({m["data"]["data_sha256"] for m in manifests.values()}) == 1
    assert len({m["config_sha256"] for m in manifests.values()}) == 4
    assert len({m["trained_weights"]["sha256"] for m in manifests.values()}) == 4
    # One base model and one environment behind all four.
    assert len({m["base_model"]["weights"]["sha256"] for m in manifests.values()}) == 1
    assert len({m["installed_packages"]["sha256"] for m in manifests.values()}) == 1


@pytest.mark.slow
def test_pinning_serves_the_pinned_experiment_without_retraining(grid_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(grid_run, workdir, symlinks=True)
    cfg = grid_config()
    cfg["serve"]["experiment"] = "lr1e-5_ep1"
    make_workdir(workdir, cfg)
    jobs = planned_jobs(workdir)
    assert jobs.get("serve") == 1 and jobs.get("select_served") == 1, jobs
    assert not {"train_adapter", "merge_adapter", "evaluate", "compare_experiments"} & set(jobs), jobs
