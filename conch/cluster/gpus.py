"""Which GPUs a locally run job may use.

Snakemake counts GPUs (`resources: gpu=N` in the profile caps the sum over running jobs) but never says
*which* devices a job gets, so every CUDA job would start on GPU 0. Here each device is a slot: one lock
file per device id in a machine-wide directory, taken with a non-blocking `flock`. A job takes as many
free slots as its `gpu` resource asks for and exports CUDA_VISIBLE_DEVICES before CUDA starts. The kernel
drops an flock when its process ends, however it ends (exception, SIGKILL, OOM killer), so a crashed job
never leaves a slot taken.

Skipped where a scheduler already chose the devices: under Slurm (SLURM_JOB_ID; Slurm's gres plugin sets
CUDA_VISIBLE_DEVICES for the job) and whenever CUDA_VISIBLE_DEVICES is already set (a Kubernetes device
plugin, a user pinning a run by hand).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from conch.errors import ConchError

LOCK_DIR_ENV = "CONCH_GPU_LOCK_DIR"


class GpuError(ConchError):
    """A job asked for more GPUs than the machine has, or waited too long for free ones."""


def default_lock_dir() -> Path:
    """Shared by every conch run on this machine, so two runs do not hand out the same device."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "conch-gpu-slots")


def detect_devices() -> list[str]:
    """Device ids of this machine's NVIDIA GPUs, as `nvidia-smi` numbers them; [] when there are none."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            return [line.strip() for line in out.splitlines() if line.strip().isdigit()]
        except (OSError, subprocess.SubprocessError):
            pass
    proc = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(proc.iterdir())))] if proc.is_dir() else []


def cuda_usable(env: MutableMapping[str, str] | None = None) -> bool:
    """Whether a job will see a GPU, known without importing torch (two seconds of every job's start): an
    NVIDIA device is present and CUDA_VISIBLE_DEVICES does not hide them all."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return bool(detect_devices())


@dataclass
class Lease:
    """GPU slots held by this process until release() or exit."""

    devices: list[str]
    _files: list[IO] = field(default_factory=list, repr=False)

    @property
    def visible(self) -> str:
        return ",".join(self.devices)

    def release(self) -> None:
        for fh in self._files:
            fh.close()  # closing the descriptor drops the flock
        self._files.clear()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(path: Path) -> IO | None:
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lease's lifetime
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.truncate(0)
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")  # for whoever wonders who holds it
    fh.flush()
    return fh


def claim(
    n: int,
    devices: Iterable[str | int] | None = None,
    *,
    lock_dir: str | Path | None = None,
    timeout: float | None = None,
    poll: float = 0.5,
    log: Callable[[str], None] | None = None,
) -> Lease:
    """Take `n` free devices out of `devices` (default: all detected), waiting while all are busy.

    Takes all `n` or none: a partial set is let go before waiting, so two jobs that each need two of
    three GPUs cannot block each other forever.
    """
    pool = [str(d) for d in (detect_devices() if devices is None else devices)]
    bad = [d for d in pool if not re.fullmatch(r"[A-Za-z0-9-]+", d)]
    if bad:
        raise GpuError(
            f"compute.devices: {bad[0]!r} is not a device id (use numbers as nvidia-smi lists them)"
        )
    if n > len(pool):
        where = "compute.devices lists" if devices is not None else "nvidia-smi finds"
        raise GpuError(
            f"this job asks for {n} GPU(s) (compute.gpus) but {where} {len(pool)} on {socket.gethostname()}"
            f"{': ' + ','.join(pool) if pool else ''}; lower compute.gpus or run it where the GPUs are"
        )
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        directory.chmod(0o1777)  # shared by every user's runs, like /tmp
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        held: list[tuple[str, IO]] = []
        for device in pool:
            fh = _try_lock(directory / f"gpu{device}.lock")
            if fh is not None:
                held.append((device, fh))
                if len(held) == n:
                    return Lease([d for d, _ in held], [f for _, f in held])
        for _, fh in held:
            fh.close()
        if deadline is not None and time.monotonic() >= deadline:
            raise GpuError(
                f"no {n} free GPU(s) among {','.join(pool)} after {timeout:g} s "
                f"(slots in {directory} are held by other jobs)"
            )
        if not told and log is not None:
            log(f"waiting for {n} free GPU(s) among {','.join(pool)} (slots in {directory})")
            told = True
        time.sleep(poll)


def assign(
    n: int,
    devices: Iterable[str | int] | None = None,
    env: MutableMapping[str, str] | None = None,
    **claim_args,
) -> Lease | None:
    """Export CUDA_VISIBLE_DEVICES for a job needing `n` GPUs, unless a scheduler already did.

    A job that asked for no GPU sees none, so a CPU step cannot land on a GPU Snakemake did not count.
    Returns the lease to keep for the job's lifetime (None when nothing was claimed).
    """
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env or "SLURM_JOB_ID" in env:
        return None
    if n <= 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
        return None
    lease = claim(n, devices, **claim_args)
    env["CUDA_VISIBLE_DEVICES"] = lease.visible
    return lease


def assign_for(resources, config: dict) -> Lease | None:
    """assign() for a job's `resources` (its `gpu` count) and the workflow config (compute.devices)."""
    n = int(getattr(resources, "gpu", 0) or 0)
    devices = (config.get("compute") or {}).get("devices")
    return assign(
        n, devices, log=lambda msg: print(f"conch.cluster.gpus: {msg}", file=sys.stderr, flush=True)
    )
