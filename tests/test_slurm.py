"""The tiny workflow on a real Slurm (ci/start-slurm.sh): profiles/slurm with only the site values
overridden. Every non-local rule must run as a Slurm job (sacct), the training job with its GPU request;
a training job killed at its time limit must be reported with its Slurm log and retried with more
time; the outputs must equal the local run's (tests/conftest.py `tiny_run`).

Only with CONCH_TEST_SLURM=1 (`make test-slurm`; tests/conftest.py deselects them otherwise). They use the
Slurm that is running, else start one with ci/start-slurm.sh (root: apt-get, daemons) and stop again the
daemons they started."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SLURM_OPT_IN, make_workdir, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ACCOUNT = os.environ.get("SLURM_TEST_ACCOUNT", "testacct")
CORE_RULES = {
    "prepare_dataset",
    "build_scratch_model",
    "train_adapter",
    "merge_adapter",
    "evaluate",
    "serve",
}
SNAKEMAKE_TIMEOUT = 1800  # the slurm plugin can wait forever on a broken status command; never hang CI
START_SLURM = REPO / "ci" / "start-slurm.sh"


def _ready() -> str | None:
    """None when a node is idle and accounting answers, else why not."""
    if not shutil.which("sinfo"):
        return "sinfo not found"
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False)
    if not re.search(r"\b(idle|mix|alloc)\b", state.stdout):
        return f"no usable node (sinfo: {state.stdout.strip() or state.stderr.strip()})"
    acct = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "account", "format=account"],
        capture_output=True,
        text=True,
        check=False,
    )
    if ACCOUNT not in acct.stdout.split():
        return f"account {ACCOUNT} unknown to sacctmgr ({acct.stderr.strip()})"
    return None


def running_daemons() -> set[str]:
    """The daemons of ci/start-slurm.sh that are running now (munged, mariadbd, slurmdbd, slurmctld, slurmd)."""
    out = subprocess.run([str(START_SLURM), "status"], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.fixture(scope="module")
def slurm():
    """A Slurm ready for jobs: the one running, else one ci/start-slurm.sh starts here and stops afterwards."""
    why = _ready()
    if why is None:
        yield
        return
    if os.geteuid() != 0:
        pytest.fail(f"no Slurm ready ({why}), and ci/start-slurm.sh needs root to start one")
    before = running_daemons()
    start = subprocess.run([str(START_SLURM)], capture_output=True, text=True, timeout=900, check=False)
    started = running_daemons() - before
    try:
        why = _ready() if start.returncode == 0 else f"ci/start-slurm.sh failed: {start.stderr[-1500:]}"
        if why:
            pytest.fail(f"Slurm did not start: {why}")
        yield
    finally:
        if started:
            subprocess.run([str(START_SLURM), "stop", *started], capture_output=True, timeout=120, check=True)


def test_a_session_stops_the_slurm_daemons_it_started(tmp_path):
    """First in this file, so on a fresh machine nothing runs yet: a session of its own starts Slurm for one
    test, and afterwards the same daemons run as before (none, on a machine without Slurm)."""
    before = running_daemons()
    nested = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={tmp_path / 'nested'}",
    ]
    one_test = f"{Path(__file__)}::test_multi_node_launch_reads_the_jobs_nodes_from_slurm"
    proc = subprocess.run(
        [*nested, one_test], capture_output=True, text=True, cwd=REPO, env={**os.environ, SLURM_OPT_IN: "1"},
        timeout=1200, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert running_daemons() == before, f"before the session: {sorted(before)}"


def test_profile(tmp_path: Path) -> Path:
    """profiles/slurm as a site would adapt it: its account and partitions, nothing else."""
    dest = tmp_path / "slurm-profile"
    shutil.copytree(REPO / "profiles" / "slurm", dest)
    profile = yaml.safe_load((dest / "config.yaml").read_text())
    profile["default-resources"]["slurm_account"] = ACCOUNT
    profile["slurm-init-seconds-before-status-checks"] = 2  # each idle poll still adds 10 s
    profile["slurm-keep-successful-logs"] = True
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    gres = subprocess.run(
        ["sinfo", "-h", "-o", "%P %G %c"], capture_output=True, text=True, check=True
    ).stdout
    partitions = {}
    for line in gres.splitlines():
        name, gres_field, cpus = line.split()
        gpus = re.search(r"gpu:(?:\w+:)?(\d+)", gres_field)
        partitions[name.rstrip("*")] = {
            "max_gpu": int(gpus.group(1)) if gpus else 0,
            "max_threads": int(cpus),
        }
    (dest / "partitions.yaml").write_text(yaml.safe_dump({"partitions": partitions}))
    return dest


test_profile.__test__ = False  # a helper, named after what it makes


def _job_processes(job_id: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"SLURM_JOB_ID={job_id}".encode() in environ:
                pids.append(int(proc.name))
    return pids


def _overrun_first_training_job(stop: threading.Event, found: dict) -> None:
    """Freeze the first train_adapter job and cut its time limit: Slurm kills it (TIMEOUT), as it
    would a hung job. Frozen early, before any checkpoint, so the retry trains from scratch."""
    while not stop.is_set():
        out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            job_id, comment, state = line.split("|")
            if comment.startswith("rule_train_adapter") and state == "RUNNING":
                for _ in range(3):  # catch children started while we looked
                    for pid in _job_processes(job_id):
                        os.kill(pid, signal.SIGSTOP)
                    time.sleep(0.2)
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=00:00:01"], check=True)
                found["job"] = job_id
                return
        time.sleep(0.3)


def sacct_jobs(since: str) -> list[dict]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,Comment,State,AllocTRES,Timelimit"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = ["id", "comment", "state", "tres", "timelimit"]
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm")
    cfg = tiny_config()
    cfg["compute"]["gpus"] = 1  # the training family asks for the node's (fake) GPU
    if "rag" in cfg:
        cfg["rag"]["enabled"] = False  # lean: the RAG branch has its own tests and nothing cluster-specific
    workdir = make_workdir(tmp / "run", cfg)
    profile = test_profile(tmp)
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    stop, found = threading.Event(), {}
    watcher = threading.Thread(target=_overrun_first_training_job, args=(stop, found), daemon=True)
    watcher.start()
    cmd = [
        "timeout", "-k", "30", str(SNAKEMAKE_TIMEOUT),
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
        "--workflow-profile", str(profile),
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    stop.set()
    log = proc.stdout + proc.stderr
    (tmp / "snakemake.log").write_text(log)  # kept with the run for whoever debugs a failure
    assert proc.returncode == 0, f"snakemake on Slurm failed ({proc.returncode}):\n{log[-8000:]}"
    print(f"\nSlurm run: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return {"workdir": workdir, "log": log, "jobs": sacct_jobs(since), "killed": found.get("job")}


def test_every_non_local_rule_ran_as_a_slurm_job(slurm_run):
    # Snakemake logs remote jobs as `rule NAME:` and the ones it runs itself as `localrule NAME:`
    # (`checkpoint`/`localcheckpoint` for checkpoints)
    remote = set(re.findall(r"^(?:rule|checkpoint) (\w+):$", slurm_run["log"], re.M))
    local = set(re.findall(r"^local(?:rule|checkpoint) (\w+):$", slurm_run["log"], re.M))
    assert remote >= CORE_RULES and "register_dataset" in local, (remote, local)
    by_rule = {}
    for job in slurm_run["jobs"]:
        rule = re.match(r"rule_(\w+?)(_wildcards_.*)?$", job["comment"]).group(1)
        by_rule.setdefault(rule, []).append(job)
    assert set(by_rule) == remote, f"sacct saw {sorted(by_rule)}, snakemake submitted {sorted(remote)}"
    assert all(js[-1]["state"] == "COMPLETED" for js in by_rule.values()), slurm_run["jobs"]
    final_train = by_rule["train_adapter"][-1]
    assert "gres/gpu=1" in final_train["tres"], f"training job without its GPU: {final_train}"
    assert "gres/gpu" not in by_rule["prepare_dataset"][0]["tres"], "data preparation asks for no GPU"


def test_a_job_killed_at_its_time_limit_is_reported_and_retried_with_more_time(slurm_run):
    killed = slurm_run["killed"]
    assert killed, "the watcher never saw the training job running"
    trains = [j for j in slurm_run["jobs"] if j["comment"].startswith("rule_train_adapter")]
    assert [j["state"] for j in trains] == ["TIMEOUT", "COMPLETED"], trains
    assert trains[0]["id"] == killed
    assert trains[1]["timelimit"] == "02:00:00", "the retry asks for compute.runtime x attempt 2"
    log = slurm_run["log"]
    assert f"SLURM-job '{killed}' failed, SLURM status is: 'TIMEOUT'" in log
    slurm_log = f".snakemake/slurm_logs/rule_train_adapter/default/{killed}.log"
    assert slurm_log in log, "the report names the killed job's Slurm log"
    assert (slurm_run["workdir"] / slurm_log).exists()
    assert "Trying to restart job" in log


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def test_outputs_equal_a_local_run(slurm_run, tiny_run):
    ours, local = slurm_run["workdir"], tiny_run
    for split in ("train", "val", "test", "rejects"):
        rel = f"results/data/magic_conch/{split}.jsonl"
        assert (ours / rel).read_bytes() == (local / rel).read_bytes(), f"{rel} differs"
    info = "results/data/magic_conch/dataset_info.json"
    assert json.loads((ours / info).read_text()) == json.loads((local / info).read_text())
    # Same data, seed and thread count: CPU training is bit-for-bit repeatable, across a retry too.
    adapter = "results/adapters/default/adapter_model.safetensors"
    a, b = _tensors(ours / adapter), _tensors(local / adapter)
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert not different, f"adapter tensors differ from the local run's: {different[:5]}"
    metrics = "results/eval/default/metrics.json"
    assert json.loads((ours / metrics).read_text()) == json.loads((local / metrics).read_text())


def test_multi_node_launch_reads_the_jobs_nodes_from_slurm(slurm, tmp_path):
    """conch.cluster.launch asks squeue/scontrol for the job's hosts (a job step has no SLURM_JOB_NODELIST)."""
    probe = (
        "import os, socket\n"
        "from conch.cluster import launch\n"
        "from conch.errors import ConfigError\n"
        "print('hosts', launch._job_nodes(os.environ['SLURM_JOB_ID']), socket.gethostname().split('.')[0])\n"
        "try:\n"
        "    launch.launch_env({'gpus': 1, 'nodes': 2, 'mem_mb': 1, 'runtime': 1}, os.environ)\n"
        "except ConfigError as err:\n"
        "    print('error', err)\n"
    )
    proc = subprocess.run(
        ["timeout", "-k", "10", "300", "srun", "-A", ACCOUNT, "-n1", "-t", "5", sys.executable, "-c", probe],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hosts_line = next(line for line in proc.stdout.splitlines() if line.startswith("hosts"))
    hosts, me = hosts_line[len("hosts ") :].rsplit(" ", 1)
    assert hosts == f"['{me}']"
    assert "compute.nodes is 2 but Slurm job" in proc.stdout and f"holds 1: ['{me}']" in proc.stdout
