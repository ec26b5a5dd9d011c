"""How train_adapter is launched (conch/cluster/launch.py) and what the Slurm plugin turns the tags into."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys

import pytest
from conftest import REPO, default_config, make_workdir, snakemake, tiny_config
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from conch.cluster import launch
from conch.errors import ConfigError
from conch.llamafactory import lf

COMPUTE = default_config()["compute"]


def compute(**over):
    return {**COMPUTE, **over}


def test_cpu_default_is_one_plain_process():
    assert launch.launch_env(compute(), {}) == {}
    assert launch.command(["llamafactory-cli"], "t.yaml", {}) == ["llamafactory-cli", "train", "t.yaml"]


def test_several_gpus_of_one_node_run_under_torchrun():
    env = launch.launch_env(compute(gpus=4), {"PATH": "/usr/bin"})
    assert {
        k: env[k] for k in ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR")
    } == {
        "FORCE_TORCHRUN": "1",
        "NPROC_PER_NODE": "4",
        "NNODES": "1",
        "NODE_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
    }
    assert "MASTER_PORT" not in env, (
        "one node: LLaMA-Factory picks a free port, so jobs sharing a node differ"
    )
    assert env["PATH"].endswith("/usr/bin") and env["PATH"] != "/usr/bin", (
        "torchrun of this environment first"
    )
    assert launch.launch_env(compute(gpus=4, master_port=29555), {})["MASTER_PORT"] == "29555"


def test_torchrun_can_be_forced_or_refused():
    forced = launch.launch_env(compute(torchrun=True, nproc_per_node=2), {})
    assert forced["FORCE_TORCHRUN"] == "1" and forced["NPROC_PER_NODE"] == "2"
    assert launch.launch_env(compute(gpus=4, torchrun=False), {}) == {}


def test_multi_node_rendezvous_at_the_jobs_first_node():
    env = launch.launch_env(
        compute(gpus=8, nodes=2), {"SLURM_JOB_ID": "4321"}, nodes_of=lambda job: ["gpu-a17", "gpu-a18"]
    )
    assert env["NNODES"] == "2" and env["NPROC_PER_NODE"] == "8"
    assert env["MASTER_ADDR"] == "gpu-a17"
    assert env["MASTER_PORT"] == str(20000 + 4321)
    assert "NODE_RANK" not in env, "each node's task sets its own rank"
    argv = launch.command(["/env/bin/llamafactory-cli"], "/w/train_config.yaml", env)
    assert argv[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert argv[5:7] == ["bash", "-c"]
    assert argv[7] == "NODE_RANK=$SLURM_NODEID exec /env/bin/llamafactory-cli train /w/train_config.yaml"
    assert shlex.split(argv[7])[2:] == ["/env/bin/llamafactory-cli", "train", "/w/train_config.yaml"]


def test_each_node_takes_its_rank_from_slurm(tmp_path):
    """The per-node shell line, run for real: quoting survives and NODE_RANK comes from SLURM_NODEID."""
    fake_cli = [sys.executable, "-c", "import os, sys; print(os.environ['NODE_RANK'], sys.argv[1:])"]
    yaml_path = tmp_path / "dir with space" / "train_config.yaml"
    argv = launch.command(fake_cli, yaml_path, {"NNODES": "2"})
    out = subprocess.run(
        argv[5:], env={**os.environ, "SLURM_NODEID": "1"}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"1 ['train', '{yaml_path}']"


def test_multi_node_outside_slurm_or_short_of_nodes_names_the_setting():
    with pytest.raises(ConfigError, match="compute.nodes > 1 runs one torchrun per node of a Slurm job"):
        launch.launch_env(compute(gpus=1, nodes=2), {})
    with pytest.raises(ConfigError, match="compute.nodes is 3 but Slurm job 9 holds 2"):
        launch.launch_env(compute(gpus=1, nodes=3), {"SLURM_JOB_ID": "9"}, nodes_of=lambda job: ["a", "b"])
    with pytest.raises(ConfigError, match=r"compute.nodes > 1 needs compute.gpus >= 1"):
        launch.resource_tags(compute(nodes=2), multinode=True)


def test_runtime_grows_with_each_attempt():
    tags = launch.resource_tags(compute(runtime=45))
    assert tags["runtime"](None, 1) == 45 and tags["runtime"](None, 2) == 90
    assert "gpu" not in tags, "a CPU config asks for no GPU"


class Resources(dict):
    """A job's evaluated resources as the plugin reads them: .get() and attribute access."""

    __getattr__ = dict.__getitem__


class Job:
    def __init__(self, tags, threads=4):
        evaluated = {k: v(None, 1) if callable(v) else v for k, v in tags.items()}
        self.resources = Resources(evaluated)
        self.threads = threads


def sbatch(tags, threads=4) -> str:
    job = Job(tags, threads)
    params = {
        "run_uuid": "r",
        "slurm_logfile": "l.log",
        "comment_str": "rule_train_adapter",
        "account": "-A acct",
        "partition": "-p gpu",
        "workdir": "/w",
    }
    return get_submit_command(job, params) + set_gres_string(job)


def test_slurm_sbatch_for_gpu_tags():
    call = sbatch(launch.resource_tags(compute(gpus=2, gpu_model="a100", cpus_per_gpu=8)))
    assert "--gpus=a100:2" in call and "--cpus-per-gpu=8" in call
    assert "--mem 4000" in call and "-t 60" in call
    assert "--ntasks-per-gpu" not in call and "--nodes" not in call


def test_slurm_sbatch_for_multi_node_training():
    tags = launch.resource_tags(compute(gpus=4, nodes=2, cpus_per_gpu=6), multinode=True)
    call = sbatch(tags)
    for flag in ("--nodes=2", "--ntasks=2", "--gres=gpu:4", "--cpus-per-gpu=6"):
        assert flag in call, f"{flag} missing from: {call}"
    assert "--ntasks-per-gpu" not in call and "--gpus=" not in call
    assert tags["mpi"] == "srun", "mpi: the job step runs the script itself, not inside `srun -n1`"
    single = launch.resource_tags(compute(gpus=4, nodes=2))
    assert "nodes" not in single and single["gpu"] == 4, "eval/serve/merge stay on one node"


@pytest.mark.parametrize("name", ["ds_z2", "ds_z2_offload", "ds_z3", "ds_z3_offload"])
def test_deepspeed_configs_mirror_llamafactorys(name):
    cfg = json.loads((REPO / "config" / "deepspeed" / f"{name}.json").read_text())
    zero = cfg["zero_optimization"]
    assert zero["stage"] == int(name[4])
    assert ("offload_optimizer" in zero) == name.endswith("offload")
    assert ("offload_param" in zero) == (name == "ds_z3_offload")
    # the Trainer fills these from the training arguments, so they can never disagree
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert cfg[key] == "auto"
    known = lf.known_train_keys()
    assert known is None or "deepspeed" in known


def test_deepspeed_path_resolves_against_the_workflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train = launch.resolve_deepspeed({"deepspeed": "config/deepspeed/ds_z3.json", "lora_rank": 8}, REPO)
    assert train == {"deepspeed": str(REPO / "config/deepspeed/ds_z3.json"), "lora_rank": 8}
    (tmp_path / "mine.json").write_text("{}")
    assert launch.resolve_deepspeed({"deepspeed": "mine.json"}, REPO)["deepspeed"] == "mine.json"
    with pytest.raises(ConfigError, match="train.deepspeed: config/deepspeed/ds_z9.json exists neither"):
        launch.resolve_deepspeed({"deepspeed": "config/deepspeed/ds_z9.json"}, REPO)


@pytest.mark.slow
def test_training_under_torchrun_with_two_cpu_ranks(tmp_path):
    """The launch env for real: LLaMA-Factory under torchrun, two data-parallel ranks (gloo on CPU)."""
    cfg = tiny_config()
    cfg["compute"].update(torchrun=True, nproc_per_node=2)
    cfg["train"].update(num_train_epochs=1)
    workdir = make_workdir(tmp_path, cfg)
    snakemake(workdir, "results/adapters/default/adapter_model.safetensors")
    log = (workdir / "logs/train_adapter/default.log").read_text()
    assert "Initializing 2 distributed tasks" in log
    records = len((workdir / "results/data/magic_conch/train.jsonl").read_text().splitlines())
    last = json.loads((workdir / "results/adapters/default/trainer_log.jsonl").read_text().splitlines()[-1])
    per_step = 2 * cfg["train"]["per_device_train_batch_size"] * cfg["train"]["gradient_accumulation_steps"]
    assert last["total_steps"] == math.ceil(records / per_step), (
        "each step takes one batch on each of 2 ranks"
    )
