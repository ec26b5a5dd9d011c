"""Workflow scripts are thin: run_job hands a run() the job parts it names; a JobFailed ends the job with its
message and exit status 1, anything else keeps its traceback. The cheap run()s and helpers, without
Snakemake."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO

from conch.errors import JobFailed
from conch.evaluation.retention import answer_rows
from conch.jobs.files import write_tsv
from conch.jobs.job import run_job


def fake_job(tmp_path, **parts):
    return SimpleNamespace(log=[str(tmp_path / "job.log")], **parts)


def test_run_gets_only_the_parts_it_names(tmp_path):
    seen = {}

    def run(params, log):
        seen.update(params=params, log=log)

    # no input/output/wildcards on the fake: run() does not ask for them
    run_job(run, fake_job(tmp_path, params=SimpleNamespace(x=1)))
    assert seen == {"params": SimpleNamespace(x=1), "log": str(tmp_path / "job.log")}


def test_a_run_asking_for_an_unknown_part_is_a_bug(tmp_path):
    def run(inputs):
        pass

    with pytest.raises(TypeError, match="inputs"):
        run_job(run, fake_job(tmp_path))


def test_job_failed_exits_1_with_its_message_on_stderr_and_in_the_log(tmp_path, capsys):
    def run(log):
        Path(log).write_text("started\n")
        raise JobFailed("evaluate: data/test.jsonl is empty; raise data.test_fraction or add data")

    with pytest.raises(SystemExit) as exit_info:
        run_job(run, fake_job(tmp_path))
    assert exit_info.value.code == 1
    message = "evaluate: data/test.jsonl is empty; raise data.test_fraction or add data"
    assert capsys.readouterr().err == message + "\n"
    assert (tmp_path / "job.log").read_text() == f"started\n{message}\n"


def test_a_bug_keeps_its_traceback(tmp_path):
    def run(log):
        raise ZeroDivisionError("a real bug")

    with pytest.raises(ZeroDivisionError):
        run_job(run, fake_job(tmp_path))


@pytest.mark.parametrize(
    ("error", "code", "traceback"), [("JobFailed('no prompts')", 1, False), ("KeyError('oops')", 1, True)]
)
def test_as_a_script(tmp_path, error, code, traceback):
    """What Snakemake sees from a script: the exit status, and a traceback only for a bug."""
    script = tmp_path / "script.py"
    script.write_text(
        "from types import SimpleNamespace\n"
        "from conch.errors import JobFailed\n"
        "from conch.jobs.job import run_job\n"
        f"def run(log):\n    raise {error}\n"
        f"run_job(run, SimpleNamespace(log=[{str(tmp_path / 'job.log')!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == code
    if traceback:
        assert "Traceback" in proc.stderr and "KeyError: 'oops'" in proc.stderr
    else:
        assert proc.stderr == "no prompts\n"


def test_write_tsv_one_header_tabs_and_awkward_text(tmp_path):
    rows = [
        {"id": "a", "prompt": "两行\nlines", "answer": 'quote " and\ttab'},
        {"id": "b", "prompt": "", "answer": "plain"},
    ]
    path = write_tsv(tmp_path / "samples.tsv", rows)
    assert path.read_bytes().startswith(b"id\tprompt\tanswer\r\n")
    with open(path, encoding="utf-8", newline="") as fh:
        assert list(csv.DictReader(fh, delimiter="\t")) == rows


def test_retention_rows_pair_each_question_with_both_models():
    questions = [
        {"id": "q1", "question": "Capital of France?", "answers": ["Paris"]},
        {"id": "q2", "question": "2+2?", "answers": ["4", "four"]},
    ]
    rows = answer_rows(questions, (["Paris.", "5"], [True, False]), (["Lyon", "four"], [False, True]))
    assert rows[1] == {
        "id": "q2",
        "question": "2+2?",
        "references": "4 | four",
        "base": "5",
        "base_correct": 0,
        "tuned": "four",
        "tuned_correct": 1,
    }
    with pytest.raises(ValueError):  # a model's answers must match the questions one for one
        answer_rows(questions, (["Paris."], [True]), (["Lyon", "four"], [False, True]))


def compare_inputs(tmp_path, metric_key="rouge_l"):
    """Two experiments' metrics, trainer logs and benchmarks, under a folder that is not results/."""
    inputs = {"metrics": [], "trainer_logs": [], "train_benchmarks": []}
    for name, score in (("a", 0.2), ("b", 0.4)):
        folder = tmp_path / "elsewhere" / name
        folder.mkdir(parents=True)
        metrics = {"base": {metric_key: 0.1}, "tuned": {metric_key: score, "loss": 1.0}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "trainer_log.jsonl").write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "loss": 1.5}\n')
        (folder / "bench.tsv").write_text("s\tmax_rss\n12.5\t300\n")
        inputs["metrics"].append(str(folder / "metrics.json"))
        inputs["trainer_logs"].append(str(folder / "trainer_log.jsonl"))
        inputs["train_benchmarks"].append(str(folder / "bench.tsv"))
    names = ("table.csv", "chart.png", "loss.png", "cost.png", "best.json")
    output = dict(zip(("table", "chart", "loss_curves", "cost_chart", "best"), names, strict=True))
    return (
        SimpleNamespace(**inputs),
        SimpleNamespace(**{k: str(tmp_path / v) for k, v in output.items()}),
        SimpleNamespace(
            experiments=["a", "b"],
            train={"a": {"learning_rate": 1e-4}, "b": {"learning_rate": 5e-4}},
            metric="tuned.rouge_l",
            mode="max",
        ),
    )


def test_compare_experiments_takes_every_path_from_its_rule(tmp_path):
    from conch.evaluation.compare_experiments_job import run

    input, output, params = compare_inputs(tmp_path)
    run(input, output, params, str(tmp_path / "compare.log"))
    best = json.loads(Path(output.best).read_text())
    assert (best["best"], best["base_value"], best["values"]) == ("b", 0.1, {"a": 0.2, "b": 0.4})
    with open(output.table, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["experiment"], r["rank"], r["selected"]) for r in rows] == [
        ("a", "2", "False"),
        ("b", "1", "True"),
    ]
    assert all(Path(getattr(output, k)).stat().st_size for k in ("chart", "loss_curves", "cost_chart"))
    assert "best: b" in (tmp_path / "compare.log").read_text()


def test_compare_experiments_names_the_metrics_file_it_read(tmp_path):
    from conch.evaluation.compare_experiments_job import run

    input, output, params = compare_inputs(tmp_path, metric_key="bleu4")
    with pytest.raises(JobFailed) as failed:
        run(input, output, params, str(tmp_path / "compare.log"))
    message = str(failed.value)
    assert message.startswith("compare_experiments: selection.metric: ")
    assert f"{input.metrics[0]}: no metric 'tuned.rouge_l'" in message


def test_select_served_says_why(tmp_path):
    from conch.workflow.select_served_job import run

    files = {
        "best": {"metric": "tuned.rouge_l", "mode": "max", "best": "b", "values": {"a": 0.2, "b": 0.4}},
        "serve": {"model_path": "results/merged/b", "launch_command": "python -m conch.server ..."},
        "smoke": {"passed": True},
        "run_manifest": {
            "finetuning_type": "lora",
            "trained_weights": {"sha256": "abc"},
            "config_sha256": "def",
        },
    }
    for name, value in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(value))
    input = SimpleNamespace(
        best=str(tmp_path / "best.json"),
        serve=[str(tmp_path / "serve.json")],
        smoke=[str(tmp_path / "smoke.json")],
        run_manifest=str(tmp_path / "run_manifest.json"),
    )
    out = tmp_path / "selected.json"
    run(input, [str(out)], SimpleNamespace(pinned=False, experiment="b"), str(tmp_path / "select.log"))
    selected = json.loads(out.read_text())
    assert (selected["reason"], selected["value"], selected["trained_sha256"]) == (
        "best by tuned.rouge_l (max)",
        0.4,
        "abc",
    )
    assert (tmp_path / "select.log").read_text() == "serving b: best by tuned.rouge_l (max)\n"
