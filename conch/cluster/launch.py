"""How many processes train one adapter, and where: config `compute` to scheduler tags and launch env.

- One process (the default, and any CPU run): `llamafactory-cli train FILE`.
- Several GPUs of one node (`compute.gpus` > 1, or `compute.torchrun: true`): LLaMA-Factory starts
  torchrun itself when FORCE_TORCHRUN=1, with NPROC_PER_NODE ranks; the rule asks for that many GPUs.
- Several nodes (`compute.nodes` > 1, Slurm only): the job holds `nodes` nodes with `gpus` GPUs each and
  `srun` starts one `llamafactory-cli train` (so one torchrun) per node, with NNODES, NODE_RANK,
  MASTER_ADDR (the job's first node) and MASTER_PORT.

DeepSpeed is a training argument like any other: `train.deepspeed: config/deepspeed/ds_z3_offload.json`
(resolved against the workflow's directory when it is not a file in the working directory).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from conch.errors import ConfigError

DEFAULT_MASTER_PORT = 29500


def nproc_per_node(compute: Mapping) -> int:
    """Training ranks per node: compute.nproc_per_node, else one per GPU, else one."""
    return int(compute.get("nproc_per_node") or compute.get("gpus") or 1)


def uses_torchrun(compute: Mapping) -> bool:
    mode = compute.get("torchrun")  # `auto` (the schema's default) decides by the ranks and nodes below
    if mode in (True, "true"):
        return True
    if mode in (False, "false"):
        return False
    return nproc_per_node(compute) > 1 or int(compute.get("nodes") or 1) > 1


def resource_tags(compute: Mapping, *, multinode: bool = False) -> dict:
    """Scheduler-neutral resources of a GPU-family rule; partitions, accounts and images stay in profiles.

    `gpu` (count), `gpu_model` and `cpus_per_gpu` are read by the Slurm plugin (--gpus=[model:]N,
    --cpus-per-gpu), `gpu` by the Kubernetes plugin (nvidia.com/gpu) and by local runs (the profile's
    `resources: gpu` caps their sum). `runtime` grows with each retry, so a job killed at its time
    limit comes back with more. Multi-node (training only) needs Slurm's own vocabulary: one task per
    node, GPUs per node as gres, and `mpi` so the job step does not wrap the job in `srun -n1`.
    """
    base_runtime = int(compute["runtime"])
    tags: dict = {
        "mem_mb": int(compute["mem_mb"]),
        "runtime": lambda wildcards, attempt: base_runtime * attempt,
    }
    gpus, nodes = int(compute.get("gpus") or 0), int(compute.get("nodes") or 1)
    if multinode and nodes > 1:
        if gpus < 1:
            raise ConfigError("compute.nodes > 1 needs compute.gpus >= 1 (GPUs per node)")
        model = compute.get("gpu_model")
        tags.update(
            nodes=nodes,
            tasks=nodes,
            tasks_per_gpu=0,  # the plugin would otherwise read `tasks` as --ntasks-per-gpu
            mpi="srun",
            gres=f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}",
        )
    elif gpus:
        tags["gpu"] = gpus
        if compute.get("gpu_model"):
            tags["gpu_model"] = compute["gpu_model"]
    if gpus and compute.get("cpus_per_gpu"):
        tags["cpus_per_gpu"] = int(compute["cpus_per_gpu"])
    return tags


def _job_nodes(job_id: str) -> list[str]:
    """Host names of a Slurm job (the job step's environment lacks SLURM_JOB_NODELIST)."""
    nodelist = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True, check=True
    ).stdout.strip()
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    ).stdout.split()
    return hosts


def master_port(compute: Mapping, environ: Mapping[str, str]) -> int:
    """compute.master_port, else one derived from the Slurm job id so jobs sharing a node differ."""
    if compute.get("master_port"):
        return int(compute["master_port"])
    job_id = environ.get("SLURM_JOB_ID", "")
    return 20000 + int(job_id) % 20000 if job_id.isdigit() else DEFAULT_MASTER_PORT


def launch_env(compute: Mapping, environ: Mapping[str, str] | None = None, nodes_of=_job_nodes) -> dict:
    """Environment for `llamafactory-cli train` (passed to conch.llamafactory.lf.run): {} for a plain single process.

    LLaMA-Factory's launcher reads FORCE_TORCHRUN, NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_ADDR and
    MASTER_PORT. On one node MASTER_PORT is left to LLaMA-Factory (a free port), unless set in config.
    """
    environ = os.environ if environ is None else environ
    if not uses_torchrun(compute):
        return {}
    nodes = int(compute.get("nodes") or 1)
    env = {
        "FORCE_TORCHRUN": "1",
        "NPROC_PER_NODE": str(nproc_per_node(compute)),
        "NNODES": str(nodes),
        # torchrun is called by name: make it the one beside this interpreter (venv or conda env)
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", "")]),
    }
    if nodes == 1:
        env.update(NODE_RANK="0", MASTER_ADDR="127.0.0.1")
        if compute.get("master_port"):
            env["MASTER_PORT"] = str(compute["master_port"])
        return env
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        raise ConfigError(
            "compute.nodes > 1 runs one torchrun per node of a Slurm job; use the slurm profile "
            "(snakemake --workflow-profile profiles/slurm) or set compute.nodes: 1"
        )
    hosts = nodes_of(job_id)
    if len(hosts) < nodes:
        raise ConfigError(f"compute.nodes is {nodes} but Slurm job {job_id} holds {len(hosts)}: {hosts}")
    env.update(MASTER_ADDR=hosts[0], MASTER_PORT=str(master_port(compute, environ)))
    return env


def command(cli: list[str], yaml_path: str | Path, env: Mapping[str, str]) -> list[str]:
    """The argv that runs `llamafactory-cli train yaml_path` under `env` (from launch_env).

    Multi-node: one srun task per node; each sets NODE_RANK from its SLURM_NODEID before exec'ing the
    same CLI, so torchrun on every node joins the rendezvous at MASTER_ADDR:MASTER_PORT.
    """
    train = [*cli, "train", str(yaml_path)]
    nodes = int(env.get("NNODES", "1"))
    if nodes <= 1:
        return train
    per_node = f"NODE_RANK=$SLURM_NODEID exec {shlex.join(train)}"
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "bash",
        "-c",
        per_node,
    ]


def resolve_deepspeed(train: dict, workflow_dir: str | Path) -> dict:
    """A relative `deepspeed` config path names a file in the working directory or else in the workflow."""
    path = train.get("deepspeed")
    if not path or Path(path).is_absolute() or Path(path).exists():
        return train
    candidate = Path(workflow_dir) / path
    if not candidate.exists():
        raise ConfigError(
            f"train.deepspeed: {path} exists neither in the working directory nor in {workflow_dir}"
        )
    return {**train, "deepspeed": str(candidate)}


def run_train(yaml_path: str | Path, log_path: str | Path, env: Mapping[str, str]) -> None:
    """`llamafactory-cli train` as launch_env says: through conch.llamafactory.lf.run, or under srun across nodes."""
    from conch.llamafactory import lf

    if int(env.get("NNODES", "1")) <= 1:
        lf.run("train", yaml_path, log_path, env=dict(env))
        return
    argv = command(lf.cli(), yaml_path, env)
    # as conch.llamafactory.lf.run: never phone home from a training job, unless the environment says otherwise
    full_env = {"HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1", **os.environ, **env}
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, check=False)
    if proc.returncode != 0:
        tail = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise RuntimeError(
            f"multi-node training failed (exit {proc.returncode}); log {log_path}:\n" + "\n".join(tail)
        )
