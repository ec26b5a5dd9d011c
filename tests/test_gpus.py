"""GPU slots for local runs (conch/cluster/gpus.py): real processes, real flock, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO

from conch.cluster import gpus

# A job: claims `n` of `devices`, reports what it got, holds it until told to go (or crashes).
HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from conch.cluster import gpus
    n, devices, lock_dir, report, mode = sys.argv[1:6]
    env = {}
    lease = gpus.assign(int(n), devices.split(","), env, lock_dir=lock_dir, poll=0.05)
    Path(report).write_text(env["CUDA_VISIBLE_DEVICES"] + "\\n")
    if mode == "crash":
        os._exit(3)  # no cleanup code runs, like a segfault
    while not Path(report + ".go").exists():
        time.sleep(0.05)
    """
)


def start(
    tmp_path: Path, name: str, n: int, devices: str, mode: str = "hold"
) -> tuple[subprocess.Popen, Path]:
    report = tmp_path / f"{name}.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n), devices, str(tmp_path / "locks"), str(report), mode],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return proc, report


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text().strip()


def test_concurrent_jobs_get_distinct_devices(tmp_path):
    jobs = [start(tmp_path, f"job{i}", 1, "0,1,2") for i in range(3)]
    got = [wait_for(report) for _, report in jobs]
    assert sorted(got) == ["0", "1", "2"]
    for proc, report in jobs:
        Path(f"{report}.go").touch()
        assert proc.wait(timeout=30) == 0


def test_multi_gpu_jobs_take_whole_sets(tmp_path):
    a, ra = start(tmp_path, "a", 2, "0,1,2,3")
    b, rb = start(tmp_path, "b", 2, "0,1,2,3")
    sets = [set(wait_for(ra).split(",")), set(wait_for(rb).split(","))]
    assert all(len(s) == 2 for s in sets) and not sets[0] & sets[1]
    for proc, report in ((a, ra), (b, rb)):
        Path(f"{report}.go").touch()
        proc.wait(timeout=30)


def test_a_job_waits_for_a_busy_device_and_gets_it_on_release(tmp_path):
    first, r1 = start(tmp_path, "first", 1, "5")
    assert wait_for(r1) == "5"
    second, r2 = start(tmp_path, "second", 1, "5")
    time.sleep(1.0)
    assert not r2.exists(), "the second job must wait while device 5 is held"
    Path(f"{r1}.go").touch()
    assert first.wait(timeout=30) == 0
    assert wait_for(r2) == "5"
    Path(f"{r2}.go").touch()
    second.wait(timeout=30)


def test_slots_are_released_when_a_job_crashes_or_is_killed(tmp_path):
    crashed, rc = start(tmp_path, "crashed", 1, "0", mode="crash")
    assert wait_for(rc) == "0"
    assert crashed.wait(timeout=30) == 3
    killed, rk = start(tmp_path, "killed", 1, "0")
    assert wait_for(rk) == "0", "the crashed job's slot must be free"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    with gpus.claim(1, ["0"], lock_dir=tmp_path / "locks", timeout=5) as lease:
        assert lease.devices == ["0"], "the killed job's slot must be free"


def test_timeout_names_the_busy_slots(tmp_path):
    with (
        gpus.claim(1, ["0"], lock_dir=tmp_path, timeout=1),
        pytest.raises(gpus.GpuError, match=r"no 1 free GPU\(s\) among 0 after 0.3 s"),
    ):
        gpus.claim(1, ["0"], lock_dir=tmp_path, timeout=0.3, poll=0.05)


def test_asking_for_more_gpus_than_listed_names_the_setting(tmp_path):
    with pytest.raises(
        gpus.GpuError, match=r"asks for 2 GPU\(s\) \(compute.gpus\) but compute.devices lists 1"
    ):
        gpus.claim(2, ["0"], lock_dir=tmp_path)


def test_scheduler_choice_is_kept_and_cpu_jobs_see_no_gpu(tmp_path):
    slurm = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "3"}
    assert gpus.assign(1, ["0"], slurm, lock_dir=tmp_path) is None
    assert slurm["CUDA_VISIBLE_DEVICES"] == "3"
    pinned = {"CUDA_VISIBLE_DEVICES": "1"}
    assert gpus.assign(2, ["0"], pinned, lock_dir=tmp_path) is None and pinned["CUDA_VISIBLE_DEVICES"] == "1"
    cpu = {}
    assert gpus.assign(0, None, cpu, lock_dir=tmp_path) is None
    assert cpu["CUDA_VISIBLE_DEVICES"] == ""


def test_cuda_usable_follows_the_driver_and_the_visible_devices(tmp_path, monkeypatch):
    """Training drops bf16 when no GPU will be seen; the answer must not need torch (it costs every job 2 s)."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 0\necho 1\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert gpus.cuda_usable({}) is True
    assert gpus.cuda_usable({"CUDA_VISIBLE_DEVICES": "1"}) is True
    assert gpus.cuda_usable({"CUDA_VISIBLE_DEVICES": ""}) is False  # a CPU job's lease
    assert gpus.cuda_usable({"CUDA_VISIBLE_DEVICES": "-1"}) is False
    smi.write_text("#!/bin/sh\nexit 9\n")  # a driver that is installed but broken: no GPU
    if not Path("/proc/driver/nvidia/gpus").is_dir():
        assert gpus.cuda_usable({}) is False
