"""Jobs killed partway: nothing half-written is taken as complete, and training resumes where it stopped.

Each test starts the real workflow, SIGKILLs a real `llamafactory-cli` process (or the whole snakemake
process group, as a node failure or the OOM killer would) at a point it waits for, then reruns.
`--retries 0` keeps the kill and the rerun in separate snakemake calls, so each outcome is unambiguous.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import REPO, make_workdir, planned_jobs, snakemake, tiny_config

pytestmark = pytest.mark.slow

EXP = "default"
ADAPTER = f"results/adapters/{EXP}"
MERGED = f"results/merged/{EXP}"
TRAIN_OUTPUTS = [
    f"{ADAPTER}/{name}"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "train_config.yaml",
        "trainer_log.jsonl",
        "training_loss.png",
    )
]


def kill_config() -> dict:
    """Tiny, and checkpointing often: 1 epoch of 15 steps, a checkpoint every 5, a log line every step."""
    cfg = tiny_config()
    cfg["train"].update(num_train_epochs=1, save_steps=5, logging_steps=1, cutoff_len=64, save_total_limit=2)
    cfg["train"]["eval_strategy"] = "no"
    cfg["rag"]["enabled"] = False
    return cfg


def start(workdir: Path, *targets: str) -> subprocess.Popen:
    """snakemake in its own process group, output to a file (a pipe nobody reads could block it)."""
    log = open(workdir / "snakemake.out", "a", encoding="utf-8")  # noqa: SIM115 - closed by finish()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    cmd += ["--cores", "2", "--retries", "0", *targets]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    try:
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.log.close()
    return code, Path(proc.log.name).read_text(encoding="utf-8", errors="replace")


def wait_for(what: str, found, proc: subprocess.Popen, timeout: float = 900, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        if proc.poll() is not None:
            _, out = finish(proc)
            raise AssertionError(f"snakemake ended before {what}:\n{out[-4000:]}")
        time.sleep(poll)
    finish(proc, timeout=0.1)
    raise AssertionError(f"timed out waiting for {what}")


def lf_process(proc: subprocess.Popen, command: str) -> psutil.Process | None:
    """The `llamafactory-cli <command>` process under snakemake, if it is running."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if any(part.endswith("llamafactory-cli") for part in cmdline) and command in cmdline:
            return child
    return None


def complete_checkpoints(workdir: Path) -> list[int]:
    return sorted(
        int(path.parent.name.split("-")[1])
        for path in (workdir / ADAPTER).glob("checkpoint-*/trainer_state.json")
    )


def logged_steps(workdir: Path) -> list[int]:
    """Steps with a training loss in trainer_log.jsonl (LLaMA-Factory appends a line per logging step)."""
    path = workdir / ADAPTER / "trainer_log.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    entries = [json.loads(line) for line in lines if line.endswith("}")]  # the last may be half-written
    return [entry["current_steps"] for entry in entries if "loss" in entry]


def kill_training_after_a_checkpoint(workdir: Path) -> int:
    """Run until the first complete checkpoint, SIGKILL `llamafactory-cli train`; the checkpoint's step."""
    proc = start(workdir, f"{ADAPTER}/adapter_model.safetensors")
    trainer = wait_for("a training process", lambda: lf_process(proc, "train"), proc)
    step = wait_for("a complete checkpoint", lambda: complete_checkpoints(workdir), proc)[-1]
    trainer.send_signal(signal.SIGKILL)
    code, out = finish(proc)
    assert code != 0, out[-3000:]
    assert "llamafactory-cli train failed (exit -9)" in out, out[-3000:]
    return step


@pytest.fixture(scope="module")
def killed_training(tmp_path_factory) -> tuple[Path, int]:
    """A workdir whose training was SIGKILLed after checkpoint N, untouched since; (workdir, N)."""
    workdir = make_workdir(tmp_path_factory.mktemp("killed_training"), kill_config())
    return workdir, kill_training_after_a_checkpoint(workdir)


def test_killed_training_leaves_no_output_looking_complete(killed_training):
    workdir, _ = killed_training
    for output in TRAIN_OUTPUTS:
        assert not (workdir / output).exists(), f"{output} of the killed job survived"
    jobs = planned_jobs(workdir, "--retries", "0", f"{MERGED}/merge_check.json")
    assert jobs.get("train_adapter") == 1 and jobs.get("merge_adapter") == 1, jobs


@pytest.fixture(scope="module")
def resumed_training(killed_training, tmp_path_factory) -> tuple[Path, int, int]:
    """The killed run, plus a half-saved later checkpoint, rerun to the end; (workdir, N, planned steps)."""
    killed, step = killed_training
    workdir = tmp_path_factory.mktemp("resumed") / "run"
    shutil.copytree(killed, workdir, symlinks=True)
    ckpt = workdir / ADAPTER / f"checkpoint-{step}"
    planned = json.loads((ckpt / "trainer_state.json").read_text())["max_steps"]
    # A kill while saving leaves a checkpoint without its trainer_state.json (written last); resuming from
    # it would crash on every retry, so the rerun must skip it for the last complete one.
    half_saved = workdir / ADAPTER / f"checkpoint-{planned + 1}"
    shutil.copytree(ckpt, half_saved)
    (half_saved / "trainer_state.json").unlink()
    snakemake(workdir, "--retries", "0", f"{ADAPTER}/adapter_model.safetensors")
    assert not half_saved.exists()
    return workdir, step, planned


def test_rerun_resumes_from_the_last_checkpoint(resumed_training):
    workdir, step, planned = resumed_training
    log = (workdir / "logs/train_adapter" / f"{EXP}.log").read_text(encoding="utf-8")
    assert f"Resuming training from {ADAPTER}/checkpoint-{step}." in log
    assert logged_steps(workdir) == list(range(step + 1, planned + 1)), "only the steps after the checkpoint"
    final = json.loads((workdir / ADAPTER / "trainer_state.json").read_text())
    assert final["global_step"] == final["max_steps"] == planned


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(("train", "learning_rate", 1.0e-3), id="training-argument"),
        pytest.param(("base_model.scratch", "seed", 1), id="base-model"),
    ],
)
def test_checkpoints_of_another_run_are_not_resumed(killed_training, tmp_path, change):
    """After a kill, a rerun with other arguments or another base model starts afresh."""
    killed, step = killed_training
    workdir = tmp_path / "run"
    shutil.copytree(killed, workdir, symlinks=True)
    block, key, value = change
    cfg_path = workdir / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    node = cfg
    for part in block.split("."):
        node = node[part]
    node[key] = value
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")

    # The first logged step tells: 1 for a fresh start, N+1 for a resumed one. No need to train on.
    proc = start(workdir, f"{ADAPTER}/adapter_model.safetensors")
    first = wait_for("the first training step", lambda: logged_steps(workdir)[:1], proc)[0]
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    log = (workdir / "logs/train_adapter" / f"{EXP}.log").read_text(encoding="utf-8")
    assert "Resuming training" not in log and first == 1


def merge_outputs_absent(workdir: Path) -> None:
    assert not (workdir / MERGED / "merge_check.json").exists(), "merge check written without a merge"
    assert not (workdir / f"results/serve/{EXP}").exists(), "serve ran on an unfinished merge"
    assert not (workdir / f"logs/serve/{EXP}.log").exists()


def test_killed_merge_is_never_served(resumed_training, tmp_path):
    """SIGKILL during `llamafactory-cli export`: first the export alone, then the whole snakemake group."""
    workdir = tmp_path / "run"
    shutil.copytree(resumed_training[0], workdir, symlinks=True)
    serve = f"results/serve/{EXP}/smoke_test.json"

    # The export dies, snakemake lives: it removes the half-written model directory and stops.
    proc = start(workdir, serve)
    wait_for("the export", lambda: lf_process(proc, "export"), proc).send_signal(signal.SIGKILL)
    code, out = finish(proc)
    assert code != 0 and "llamafactory-cli export failed (exit -9)" in out, out[-3000:]
    assert not (workdir / MERGED / "model").exists()
    merge_outputs_absent(workdir)

    # Everything dies mid-write (node failure, OOM killer): nobody cleans up, so the next run must
    # recognise the model directory as incomplete rather than serve it.
    proc = start(workdir, serve)
    export = wait_for("the export", lambda: lf_process(proc, "export"), proc)
    wait_for("the export to write", lambda: any((workdir / MERGED / "model").glob("*")), proc, poll=0.01)
    assert export.is_running(), "the export finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    assert (workdir / MERGED / "model").is_dir()
    merge_outputs_absent(workdir)
    strict = snakemake(workdir, "-n", "--workflow-profile", "none", "--cores", "1", serve, check=False)
    assert strict.returncode != 0 and "IncompleteFilesException" in strict.stdout + strict.stderr
    jobs = planned_jobs(workdir, "--retries", "0", serve)  # the default profile reruns incomplete jobs
    assert jobs.get("merge_adapter") == 1 and jobs.get("serve") == 1, jobs

    # A killed snakemake also leaves its lock: the next run refuses, and says how to go on.
    locked = snakemake(workdir, "--retries", "0", f"{MERGED}/merge_check.json", check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    snakemake(workdir, "--unlock")
    snakemake(workdir, "--retries", "0", f"{MERGED}/merge_check.json")
    assert json.loads((workdir / MERGED / "merge_check.json").read_text())["passed"]


def test_records_beyond_cutoff_len_are_counted_in_the_log(killed_training):
    """LLaMA-Factory truncates a record longer than cutoff_len tokens without a word; the job says so."""
    workdir, _ = killed_training
    log = (workdir / "logs/train_adapter" / f"{EXP}.log").read_text(encoding="utf-8")
    train = (workdir / "results/data/magic_conch/train.jsonl").read_text(encoding="utf-8").splitlines()
    match = re.search(
        r"train_adapter: (\d+) of (\d+) train records are longer than cutoff_len 64 tokens", log
    )
    assert match, log[:2000]
    assert 0 < int(match[1]) < int(match[2]) == len(train)
