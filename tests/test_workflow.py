"""The real DAG end to end on the tiny config, then what an incremental rebuild plans."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import planned_jobs, snakemake

pytestmark = pytest.mark.slow

EXP = "default"


def test_every_artifact_is_real(tiny_run):
    data = tiny_run / "results" / "data" / "magic_conch"
    stats = json.loads((data / "stats.json").read_text())
    assert stats["read"] == stats["kept"] + stats["rejected"]
    assert sum(stats["splits"].values()) == stats["kept"] > 0
    info = json.loads((data / "dataset_info.json").read_text())
    assert set(info) == {"magic_conch_train", "magic_conch_val", "magic_conch_test"}

    adapters = tiny_run / "results" / "adapters" / EXP
    train_yaml = yaml.safe_load((adapters / "train_config.yaml").read_text())
    assert train_yaml["stage"] == "sft" and train_yaml["lora_rank"] == 16
    assert (adapters / "training_loss.png").read_bytes()[:4] == b"\x89PNG"
    losses = [
        json.loads(line)["loss"]
        for line in (adapters / "trainer_log.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert losses[-1] < losses[0], "training loss must go down"


def test_adapter_loads_with_peft_and_merged_model_generates(tiny_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conch.model.modeling import generate, render

    base_path = json.loads((tiny_run / "results/base_model/scratch/manifest.json").read_text())["path"]
    base = AutoModelForCausalLM.from_pretrained(tiny_run / base_path)
    peft_model = PeftModel.from_pretrained(base, tiny_run / "results/adapters" / EXP)
    assert any("lora_A" in name for name, _ in peft_model.named_parameters())

    merged_dir = tiny_run / "results/merged" / EXP / "model"
    assert (merged_dir / "Modelfile").read_text().startswith("# ollama modelfile")
    model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(merged_dir)
    (answer,) = generate(model, tok, [render(tok, [{"role": "user", "content": "Who are you?"}])], 12)
    assert answer.strip()
    check = json.loads((tiny_run / "results/merged" / EXP / "merge_check.json").read_text())
    assert check["passed"] and check["max_abs_logit_diff"] <= check["max_tolerance_used"]
    assert check["stored_dtype"] == "float32" and check["greedy_agreement"] == 1.0


def test_eval_report_and_smoke_test(tiny_run):
    ev = tiny_run / "results/eval" / EXP
    metrics = json.loads((ev / "metrics.json").read_text())
    for model in ("base", "tuned"):
        for key in ("loss", "perplexity", "rouge_l", "bleu_4", "persona_name_recall"):
            assert key in metrics[model]
    assert metrics["tuned"]["perplexity"] < metrics["base"]["perplexity"]
    assert metrics["n_test"] == 8
    samples = (ev / "samples.tsv").read_text(encoding="utf-8").splitlines()
    assert samples[0].split("\t") == ["id", "prompt", "reference", "base", "tuned"] and len(samples) == 9
    page = (ev / "report.html").read_text(encoding="utf-8")
    # loss curve, validation loss curve, base-vs-tuned chart; no external resources
    assert page.count("data:image/png;base64,") == 3 and "<script src" not in page

    smoke = json.loads((tiny_run / "results/serve" / EXP / "smoke_test.json").read_text())
    assert smoke["passed"] and all(smoke["checks"].values())
    manifest = json.loads((tiny_run / "results/serve" / EXP / "manifest.json").read_text())
    assert manifest["launch_command"].startswith(
        "python -m conch.server --model results/merged/default/model"
    )
    assert manifest["host"] == "127.0.0.1"


def test_long_jobs_show_progress_and_the_log_keeps_everything(tiny_run):
    """Snakemake passes each job's stderr through: plain step lines (stderr is a pipe here, not a terminal)."""
    err = (tiny_run / "snakemake.stderr").read_text(encoding="utf-8")
    steps = [line for line in err.splitlines() if line.startswith("[train_adapter default] step ")]
    assert len(steps) >= 2 and "loss" in steps[0] and "\r" not in err
    total = json.loads((tiny_run / "results/adapters/default/trainer_log.jsonl").read_text().splitlines()[-1])
    assert steps[-1].startswith(f"[train_adapter default] step {total['total_steps']}/{total['total_steps']}")
    assert any(line.startswith("[evaluate default] item ") for line in err.splitlines())
    # LLaMA-Factory's own output still goes to the log only
    log = (tiny_run / "logs/train_adapter/default.log").read_text(encoding="utf-8")
    assert "***** Running training *****" in log and "Running training" not in err


def test_retention_scored_for_base_and_tuned(tiny_run):
    metrics = json.loads((tiny_run / "results/eval" / EXP / "metrics.json").read_text())
    retention = metrics["retention"]
    assert retention["questions"] >= 40 and retention["base"]["questions"] == retention["questions"]
    assert metrics["tuned"]["retention"] == retention["tuned"]["score"]
    rows = (tiny_run / "results/eval" / EXP / "retention.tsv").read_text(encoding="utf-8").splitlines()
    assert (
        rows[0].split("\t")[:3] == ["id", "question", "references"]
        and len(rows) == retention["questions"] + 1
    )


def test_nothing_to_do_after_a_run(tiny_run_copy):
    assert planned_jobs(tiny_run_copy) == {}


def test_appending_a_record_reruns_data_and_everything_downstream(tiny_run_copy):
    raw = tiny_run_copy / "data/raw/magic_conch_zh.jsonl"
    with raw.open("a", encoding="utf-8") as fh:
        fh.write(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "海螺，今天会下雨吗？"},
                        {"role": "assistant", "content": "也许有一天。"},
                    ]
                },
                ensure_ascii=False,
            )
            + "\n"
        )
    jobs = planned_jobs(tiny_run_copy)
    for rule in (
        "prepare_dataset",
        "register_dataset",
        "build_scratch_model",
        "measure_token_lengths",
        "train_adapter",
        "merge_adapter",
        "evaluate",
        "serve",
    ):
        assert jobs.get(rule) == 1, (rule, jobs)


def test_changing_a_lora_hyperparameter_reruns_training_not_data(tiny_run_copy):
    cfg_path = tiny_run_copy / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    cfg["train"]["lora_rank"] = 8
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    jobs = planned_jobs(tiny_run_copy)
    assert {"train_adapter", "merge_adapter", "evaluate", "serve"} <= set(jobs), jobs
    shared = {"prepare_dataset", "register_dataset", "build_scratch_model", "measure_token_lengths"}
    assert not shared & set(jobs), jobs


def test_a_rerun_after_a_hyperparameter_change_retrains_from_scratch(tiny_run_copy):
    """Stale checkpoints of another configuration must not be resumed."""
    cfg_path = tiny_run_copy / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    adapters = tiny_run_copy / "results/adapters/default"
    assert list(adapters.glob("checkpoint-*")), "the first run should have left checkpoints"
    cfg["train"].update(learning_rate=1e-3)
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    snakemake(tiny_run_copy, "results/adapters/default/adapter_model.safetensors")
    log = (tiny_run_copy / "logs/train_adapter/default.log").read_text()
    assert "Resuming training" not in log
    first = json.loads((adapters / "trainer_log.jsonl").read_text().splitlines()[0])
    assert first["current_steps"] <= 2, "training must start from step 0"
    assert (
        yaml.safe_load((tiny_run_copy / "results/adapters/default/train_config.yaml").read_text())[
            "learning_rate"
        ]
        == 1e-3
    )
