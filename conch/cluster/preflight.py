"""Refuse a run whose profile cannot give the jobs what config asks for, before anything is submitted.

Snakemake is lenient where a cluster run should not be: it caps a job's `gpu` at the `resources: gpu`
the run provides (a 4-GPU training job silently gets 1, or 0 and runs on CPU), passes resource names
it does not know (a typo such as `slurm_partiton`) to no one, and the Slurm plugin falls back to the
default partition when none of partitions.yaml fits. Each check here names the setting to change.

rules/common.smk calls check_parse() while parsing (profile keys, resource names, the GPU cap; dry runs
included) and check_run() from `onstart`, once the executor is known and the DAG is built, before the
first job is submitted (rule names in set-resources, executor, Slurm partitions and account).
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conch.errors import ConfigError

# Resource names Snakemake, its Slurm and Kubernetes executors, or conch read. Others are a typo,
# unless the run declares them as global resources (`resources:` in a profile), as a throttle.
KNOWN_RESOURCES = frozenset(
    {
        # Snakemake
        "mem", "mem_mb", "mem_mib", "disk", "disk_mb", "disk_mib", "runtime", "tmpdir", "threads",
        "_cores", "_nodes",
        # portable GPU tags conch sets from config `compute`
        "gpu", "gpu_model", "cpus_per_gpu",
        # snakemake-executor-plugin-slurm
        "slurm_partition", "slurm_account", "slurm_extra", "slurm_cluster", "cluster", "clusters",
        "nodes", "tasks", "tasks_per_node", "tasks_per_gpu", "cpus_per_task", "mem_mb_per_cpu",
        "constraint", "qos", "gres", "mpi",
        # snakemake-executor-plugin-kubernetes
        "gpu_manufacturer", "machine_type", "scale",
    }
)  # fmt: skip
PLACEHOLDER_PREFIX = "SITE_"


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def check_resources(
    default_resources: Iterable[str],
    overwrite_resources: Mapping[str, Iterable[str]],
    global_resources: Mapping[str, object],
    *,
    gpus: int,
) -> None:
    """Resource names in default-resources/set-resources, and the GPU cap of the run vs compute.gpus."""
    known = KNOWN_RESOURCES | set(global_resources)
    places = [("default-resources", default_resources)] + [
        (f"set-resources for rule {rule}", names) for rule, names in overwrite_resources.items()
    ]
    for where, names in places:
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"profile {where}: {name!r} is not a resource Snakemake, its slurm or kubernetes "
                    f"executor, or conch reads{_suggest(name, known)}; it would be ignored"
                )
    cap = global_resources.get("gpu")
    if cap is not None and gpus > int(cap):
        raise ConfigError(
            f"config compute.gpus is {gpus} but this run provides gpu={cap} (`resources: gpu` in the "
            f"profile, e.g. profiles/default, or --resources): Snakemake would cut each GPU job down to "
            f"{cap} GPU(s) without a word. Raise the profile's `resources: gpu` to the GPUs this machine "
            f"has, lower compute.gpus, or use a cluster profile"
        )


@dataclass
class Job:
    """What the checks need of a Snakemake job (kept plain so the checks are testable on their own)."""

    rule: str
    resources: Mapping[str, object]
    threads: int = 1
    is_local: bool = False
    source: object = field(default=None, repr=False)  # the Snakemake job, for the slurm plugin's scoring

    @property
    def gpus(self) -> int:
        gpu = self.resources.get("gpu") or 0
        if not gpu and "gpu" in str(self.resources.get("gres") or ""):
            gpu = int(str(self.resources["gres"]).rsplit(":", 1)[-1])
        return int(gpu)


def _run(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout if proc.returncode == 0 else None


def slurm_partitions() -> dict[str, str] | None:
    """{partition: its nodes' GRES} as sinfo reports them; None where sinfo cannot be asked."""
    out = _run(["sinfo", "-h", "-o", "%P|%G"])
    if out is None:
        return None
    parts: dict[str, str] = {}
    for line in out.splitlines():
        name, _, gres = line.partition("|")
        name = name.strip().rstrip("*")
        parts[name] = ",".join(filter(None, [parts.get(name, ""), gres.strip()]))
    return parts


def slurm_accounts(user: str) -> set[str] | None:
    out = _run(["sacctmgr", "-n", "-P", "-s", "list", "user", user, "format=account"])
    return {a.strip().lower() for a in out.split() if a.strip()} if out else None


def check_slurm(
    jobs: list[Job],
    *,
    partition_config: str | None,
    partitions: Mapping[str, str] | None,
    accounts: set[str] | None,
    no_account: bool,
    best_partition=None,
) -> None:
    """Every Slurm job has an existing partition with GPUs if it needs them, and a real account."""
    remote = [j for j in jobs if not j.is_local]
    for job in remote:
        account = job.resources.get("slurm_account")
        if account and str(account).startswith(PLACEHOLDER_PREFIX):
            raise ConfigError(
                f"profile default-resources: slurm_account is still the placeholder {account}; "
                "set your account (`sacctmgr show assoc user=$USER`) in profiles/slurm/config.yaml"
            )
        if account and accounts and not no_account and str(account).lower() not in accounts:
            raise ConfigError(
                f"profile default-resources: slurm_account {account!r} is not an account of yours "
                f"(sacctmgr lists: {', '.join(sorted(accounts))})"
            )
        partition = job.resources.get("slurm_partition")
        where = "profile slurm_partition"
        if not partition and partition_config and best_partition is not None:
            partition = best_partition(job)
            where = f"slurm-partition-config {partition_config}"
            if not partition:
                need = f"{job.gpus} GPU(s), " if job.gpus else ""
                raise ConfigError(
                    f"rule {job.rule} needs {need}{job.resources.get('runtime')} min, "
                    f"{job.resources.get('mem_mb')} MB and {job.threads} thread(s): no partition in "
                    f"{partition_config} fits (raise its max_gpu/max_runtime/... or lower config compute)"
                )
        if partitions is None or not partition:
            continue
        if partition not in partitions:
            raise ConfigError(
                f"{where}: partition {partition!r} (for rule {job.rule}) is not a partition of this "
                f"cluster (sinfo lists: {', '.join(sorted(partitions))})"
            )
        if job.gpus and "gpu" not in partitions[partition]:
            raise ConfigError(
                f"rule {job.rule} asks for {job.gpus} GPU(s) (config compute.gpus) but partition "
                f"{partition!r} ({where}) has no GPUs (sinfo GRES: {partitions[partition] or '(null)'})"
            )


def check_rule_names(settings: Mapping[str, Iterable[str]], rules: Iterable[str]) -> None:
    """Rules named in set-resources/set-threads exist (Snakemake ignores a misspelt one)."""
    rules = set(rules)
    for option, names in settings.items():
        for name in names:
            if name not in rules:
                raise ConfigError(f"profile {option}: there is no rule {name!r}{_suggest(name, rules)}")


def check_executor(executor: str, jobs: list[Job], global_resources: Mapping[str, object]) -> None:
    """Checks that need to know where jobs go; Slurm's live ones are in check_slurm."""
    if executor in ("local", "dryrun", "touch"):
        return
    if "gpu" in global_resources:
        raise ConfigError(
            f"`resources: gpu={global_resources['gpu']}` (profiles/default, or --resources) is set in a "
            f"{executor} run: Snakemake would cap every job's GPUs at it and let only that many GPU "
            f"jobs run at once. profiles/default is for local runs and Snakemake layers it over any "
            f"--profile: run `snakemake --workflow-profile profiles/{executor}` (or add "
            f"`--workflow-profile none`)"
        )
    for job in jobs:
        if job.is_local:
            continue
        if int(job.resources.get("nodes") or 1) > 1 and executor != "slurm":
            raise ConfigError(
                f"config compute.nodes > 1 (rule {job.rule}) needs the slurm executor, not {executor}"
            )
        if executor == "kubernetes" and job.gpus and not job.resources.get("gpu_manufacturer"):
            raise ConfigError(
                f"rule {job.rule} asks for {job.gpus} GPU(s): the kubernetes profile needs "
                "default-resources gpu_manufacturer (nvidia or amd) to request them"
            )


# ---- adapters from Snakemake's workflow object (rules/common.smk) ---------------------------------------
def _names(resources) -> list[str]:
    return [] if resources is None else [n for n in resources if not n.startswith("_")]


def check_parse(workflow, gpus: int, argv: list[str] | None = None) -> None:
    """The profiles' keys, then check_resources() on what the command line and profiles gave this run."""
    import sys

    files = profile_files(sys.argv[1:] if argv is None else argv, workflow.basedir)
    if files:
        options = snakemake_options()
        for path in files:
            check_profile_file(path, options)
    settings = workflow.resource_settings
    check_resources(
        _names(settings.default_resources),
        {rule: _names(res) for rule, res in settings.overwrite_resources.items()},
        {
            k: v.value if hasattr(v, "value") else v
            for k, v in workflow.global_resources.items()
            if not k.startswith("_")
        },
        gpus=gpus,
    )


class _QuietLogger:
    def info(self, *args, **kwargs): ...

    debug = warning = info


def check_run(workflow) -> None:
    """Rule names in the profile, check_executor() and, on Slurm, check_slurm() for the jobs about to run."""
    import getpass
    import os

    settings = workflow.resource_settings
    check_rule_names(
        {"set-resources": settings.overwrite_resources, "set-threads": settings.overwrite_threads},
        (rule.name for rule in workflow.rules),
    )
    executor = workflow.executor_plugin.name if workflow.executor_plugin else "local"
    jobs = [
        Job(job.rule.name, dict(job.resources.items()), job.threads, job.is_local, job)
        for job in workflow.dag.needrun_jobs()
    ]
    global_resources = {
        k: v.value if hasattr(v, "value") else v
        for k, v in workflow.global_resources.items()
        if not k.startswith("_")
    }
    check_executor(executor, jobs, global_resources)
    if executor != "slurm":
        return
    slurm_settings = workflow.executor_settings
    partition_config = slurm_settings.partition_config or os.environ.get("SNAKEMAKE_SLURM_PARTITIONS")
    best = None
    if partition_config:
        from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

        candidates = read_partition_file(partition_config)
        best = lambda job: get_best_partition(candidates, job.source, _QuietLogger())  # noqa: E731
    check_slurm(
        jobs,
        partition_config=str(partition_config) if partition_config else None,
        partitions=slurm_partitions(),
        accounts=slurm_accounts(getpass.getuser()),
        no_account=bool(slurm_settings.no_account),
        best_partition=best,
    )


# ---- profile files: a misspelt key with a mapping value is dropped by Snakemake without a word ----------
def profile_files(argv: list[str], snakefile_dir: str) -> list[Path]:
    """The profile YAML files a `snakemake` command line uses, found the way Snakemake finds them."""
    from snakemake.cli import get_profile_dir

    names, workflow_profile = [], None
    for i, arg in enumerate(argv):
        for flag in ("--profile", "--workflow-profile"):
            value = arg.split("=", 1)[1] if arg.startswith(flag + "=") else None
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            if value is not None and flag == "--profile":
                names.append(value)
            elif value is not None:
                workflow_profile = value
    files = []
    for name in names:
        found = get_profile_dir(name)
        if found:
            files.append(found[1])
    if workflow_profile != "none":
        candidates = [Path(workflow_profile)] if workflow_profile else []
        candidates += [Path("profiles") / (workflow_profile or "default")]
        candidates.append(Path(snakefile_dir) / "profiles" / (workflow_profile or "default"))
        for candidate in candidates:
            if candidate.is_file():
                files.append(candidate)
                break
            found = get_profile_dir(str(candidate)) if candidate.is_dir() else None
            if found:
                files.append(found[1])
                break
    return files


def check_profile_file(path: Path, options: Iterable[str]) -> None:
    """Every top-level key of a profile is a `snakemake` option (core or an installed plugin's)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    known = set(options)
    for key in data:
        if key not in known and key != "__use_yte__":
            raise ConfigError(f"profile {path}: {key!r} is not a snakemake option{_suggest(key, known)}")


def snakemake_options() -> set[str]:
    from snakemake.cli import get_argument_parser

    parser = get_argument_parser()
    return {s[2:] for s in parser._option_string_actions if s.startswith("--")}
