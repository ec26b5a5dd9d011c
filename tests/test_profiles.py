"""Profiles: every key means something to Snakemake, site values stay in profiles, and a profile that
cannot serve config stops the run before anything is submitted (conch/cluster/preflight.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_workdir, snakemake, tiny_config
from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

from conch.cluster import launch, preflight
from conch.errors import ConfigError

PROFILES = REPO / "profiles"
OPTIONS = preflight.snakemake_options()


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["default", "slurm", "kubernetes"])
def test_every_profile_key_is_a_snakemake_option(name):
    preflight.check_profile_file(PROFILES / name / "config.yaml", OPTIONS)


def test_a_misspelt_profile_key_is_named(tmp_path):
    # Snakemake itself drops a misspelt key whose value is a mapping without a word
    path = tmp_path / "config.yaml"
    path.write_text("executor: slurm\ndefualt-resources:\n  mem_mb: 100\n")
    with pytest.raises(
        ConfigError,
        match=r"'defualt-resources' is not a snakemake option \(did you mean default-resources\?\)",
    ):
        preflight.check_profile_file(path, OPTIONS)


def test_site_values_are_marked_and_only_in_profiles():
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm"
    assert slurm["default-resources"]["slurm_account"].startswith(preflight.PLACEHOLDER_PREFIX)
    assert "slurm_partition" not in slurm["default-resources"], "partitions come from partitions.yaml"
    text = (PROFILES / "slurm" / "config.yaml").read_text()
    assert "SITE" in text and "SITE" in (PROFILES / "slurm" / "partitions.yaml").read_text()
    k8s = profile("kubernetes")
    assert k8s["executor"] == "kubernetes" and k8s["default-resources"]["gpu_manufacturer"] == "nvidia"
    assert k8s["container-image"] and k8s["kubernetes-namespace"]
    # profiles/default is for local runs only: no executor, GPUs counted with `resources: gpu`
    local = profile("default")
    assert "executor" not in local and "gpu" in local["resources"]
    # and config carries no site value
    cfg = (REPO / "config" / "config.yaml").read_text()
    assert not re.search(r"^\s*(slurm_\w+|partition|account|gpu_manufacturer)\s*:", cfg, re.M)


def rule_resource_names() -> dict[str, set[str]]:
    """Resource names each rule declares, read from rules/*.smk (gpu_resources() counts as its tags)."""
    found = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n\s*rule ", smk.read_text())[1:]:
            name = block.split(":")[0].strip()
            res = re.search(r"\n( +)resources:\n((?:\1    .*\n)+)", block)
            keys = set()
            if res:
                keys = set(re.findall(r"^ +(\w+)=", res.group(2), re.M))
                if "gpu_resources(" in res.group(2):
                    keys |= {"gpu_resources"}
            found[name] = keys
    return found


PORTABLE = {"mem_mb", "runtime", "gpu", "gpu_model", "cpus_per_gpu", "gpu_resources"}


def test_rules_carry_only_portable_tags():
    for rule, keys in rule_resource_names().items():
        assert keys <= PORTABLE, (
            f"rule {rule} declares {sorted(keys - PORTABLE)}: site settings belong in profiles/"
        )
    tags = launch.resource_tags(
        {"mem_mb": 1, "runtime": 1, "gpus": 2, "gpu_model": "a100", "cpus_per_gpu": 4}
    )
    assert set(tags) <= PORTABLE


def test_cheap_rules_stay_on_the_submit_host():
    text = (REPO / "rules" / "data.smk").read_text()
    register = text[text.index("rule register_dataset:") :]
    assert re.search(r"^\s+localrule: True", register.split("\nrule ")[0], re.M)


# ---- the slurm plugin's own partition choice, on the shipped partitions.yaml ---------------------------
class _Resources(dict):
    __getattr__ = dict.__getitem__


class _Job:
    def __init__(self, name, threads=2, **resources):
        self.name, self.threads, self.resources = name, threads, _Resources(resources)


class _Log:
    def info(self, *a, **k): ...

    debug = warning = info


def test_partitions_yaml_sends_gpu_jobs_to_gpu_and_the_rest_to_cpu():
    parts = read_partition_file(PROFILES / "slurm" / "partitions.yaml")
    assert get_best_partition(parts, _Job("prepare", mem_mb=2000, runtime=10), _Log()) == "cpu"
    assert get_best_partition(parts, _Job("train", mem_mb=4000, runtime=60, gpu=2), _Log()) == "gpu"
    assert get_best_partition(parts, _Job("huge", gpu=64), _Log()) is None


# ---- preflight: each check, then two end to end through snakemake --------------------------------------
def test_resource_typos_and_gpu_cap_are_refused():
    with pytest.raises(
        ConfigError, match=r"default-resources: 'slurm_partiton' .*did you mean slurm_partition"
    ):
        preflight.check_resources(["mem_mb", "slurm_partiton"], {}, {}, gpus=0)
    with pytest.raises(ConfigError, match=r"set-resources for rule train_adapter: 'gpus' .*did you mean gpu"):
        preflight.check_resources([], {"train_adapter": ["gpus"]}, {}, gpus=0)
    preflight.check_resources(["io_slots"], {}, {"io_slots": 2}, gpus=0)  # a declared global throttle is fine
    with pytest.raises(ConfigError, match=r"compute.gpus is 2 but this run provides gpu=1"):
        preflight.check_resources([], {}, {"gpu": 1}, gpus=2)
    with pytest.raises(ConfigError, match=r"compute.gpus is 1 but this run provides gpu=0"):
        preflight.check_resources([], {}, {"gpu": 0}, gpus=1)
    preflight.check_resources([], {}, {}, gpus=4)  # a cluster run has no global cap


def job(rule="train_adapter", local=False, threads=2, **resources):
    return preflight.Job(rule, {"mem_mb": 4000, "runtime": 60, **resources}, threads, local)


def test_rule_names_in_profiles_must_exist():
    rules = ["train_adapter", "evaluate"]
    preflight.check_rule_names({"set-resources": ["evaluate"], "set-threads": []}, rules)
    with pytest.raises(
        ConfigError, match=r"set-threads: there is no rule 'evalute' \(did you mean evaluate\?\)"
    ):
        preflight.check_rule_names({"set-resources": [], "set-threads": ["evalute"]}, rules)


def test_executor_checks():
    with pytest.raises(ConfigError, match=r"`resources: gpu=1` .*--workflow-profile profiles/slurm"):
        preflight.check_executor("slurm", [job()], {"gpu": 1})
    preflight.check_executor("local", [job(gpu=1)], {"gpu": 1})
    with pytest.raises(ConfigError, match="kubernetes profile needs default-resources gpu_manufacturer"):
        preflight.check_executor("kubernetes", [job(gpu=1)], {})
    preflight.check_executor("kubernetes", [job(gpu=1, gpu_manufacturer="nvidia")], {})
    with pytest.raises(
        ConfigError, match=r"compute.nodes > 1 \(rule train_adapter\) needs the slurm executor"
    ):
        preflight.check_executor("kubernetes", [job(nodes=2, gres="gpu:4")], {})


def test_slurm_checks():
    sinfo = {"debug": "gpu:1", "cpu": "(null)"}
    ok = dict(partitions=sinfo, accounts={"testacct"}, no_account=False, partition_config=None)
    preflight.check_slurm([job(gpu=1, slurm_partition="debug", slurm_account="testacct")], **ok)
    with pytest.raises(ConfigError, match="slurm_account is still the placeholder SITE_ACCOUNT"):
        preflight.check_slurm([job(slurm_account="SITE_ACCOUNT")], **ok)
    with pytest.raises(
        ConfigError, match=r"slurm_account 'nobody' is not an account of yours \(sacctmgr lists: testacct\)"
    ):
        preflight.check_slurm([job(slurm_account="nobody")], **ok)
    with pytest.raises(
        ConfigError,
        match=r"partition 'gpu' \(for rule train_adapter\) is not a partition of this cluster \(sinfo lists: cpu, debug\)",
    ):
        preflight.check_slurm([job(slurm_partition="gpu")], **ok)
    with pytest.raises(
        ConfigError, match=r"rule train_adapter asks for 2 GPU\(s\) .* partition 'cpu' .*has no GPUs"
    ):
        preflight.check_slurm([job(gpu=2, slurm_partition="cpu")], **ok)
    # partitions.yaml: the plugin's choice must exist, and something must fit
    cfg = {**ok, "partition_config": "partitions.yaml"}
    with pytest.raises(ConfigError, match=r"slurm-partition-config partitions.yaml: partition 'gpu'"):
        preflight.check_slurm([job(gpu=1)], **cfg, best_partition=lambda j: "gpu")
    with pytest.raises(
        ConfigError,
        match=r"rule train_adapter needs 4 GPU\(s\), 60 min, 4000 MB .*no partition in partitions.yaml fits",
    ):
        preflight.check_slurm([job(gpu=4)], **cfg, best_partition=lambda j: None)
    preflight.check_slurm(
        [job(gpu=4, rule="register_dataset", local=True)], **cfg, best_partition=lambda j: None
    )


def test_profile_files_are_found_like_snakemake_finds_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = preflight.profile_files(["--profile", str(PROFILES / "slurm"), "-n"], str(REPO))
    assert files == [PROFILES / "slurm" / "config.yaml", REPO / "profiles" / "default" / "config.yaml"]
    assert preflight.profile_files([f"--workflow-profile={PROFILES / 'kubernetes'}"], str(REPO)) == [
        PROFILES / "kubernetes" / "config.yaml"
    ]
    assert preflight.profile_files(["--workflow-profile", "none"], str(REPO)) == []


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("preflight"), tiny_config())


def test_gpu_request_beyond_the_local_profile_fails_before_any_job(tmp_path):
    cfg = tiny_config()
    cfg["compute"]["gpus"] = 2
    workdir = make_workdir(tmp_path, cfg)
    proc = snakemake(workdir, check=False)
    assert proc.returncode != 0
    assert "config compute.gpus is 2 but this run provides gpu=1" in proc.stderr + proc.stdout
    assert not (workdir / "results").exists()


def test_profile_typo_fails_before_any_job(workdir, tmp_path):
    typo = tmp_path / "typo"
    shutil.copytree(PROFILES / "default", typo)
    with open(typo / "config.yaml", "a") as fh:
        fh.write("set-resource:\n  train_adapter:\n    mem_mb: 100\n")
    proc = snakemake(workdir, "-n", "--workflow-profile", str(typo), check=False)
    assert proc.returncode != 0
    assert (
        "'set-resource' is not a snakemake option (did you mean set-resources?)" in proc.stderr + proc.stdout
    )


def test_misspelt_rule_in_set_resources_fails_before_any_job(workdir):
    proc = snakemake(workdir, "--set-resources", "trian_adapter:mem_mb=100", check=False)
    assert proc.returncode != 0
    assert "there is no rule 'trian_adapter' (did you mean train_adapter?)" in proc.stderr + proc.stdout
    assert not (workdir / "results").exists(), "onstart runs before the first job"
