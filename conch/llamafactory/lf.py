"""LLaMA-Factory as conch drives it: the YAML files it reads and the `llamafactory-cli` runs.

We orchestrate LLaMA-Factory, we do not rewrite it: every training key in config passes through unchanged,
and the YAML is kept beside its output so a run can be repeated by hand with `llamafactory-cli train FILE`.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

# Keys the workflow derives from the DAG; letting config set them would break the wiring between rules.
RESERVED_TRAIN_KEYS = frozenset(
    {
        "model_name_or_path",
        "adapter_name_or_path",
        "dataset",
        "eval_dataset",
        "dataset_dir",
        "template",
        "output_dir",
        "stage",
        "do_train",
        "export_dir",
    }
)


def package_dir(name: str) -> Path | None:
    """Where an installed package's source is, without importing it; None when it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# Config is checked at DAG-parse time, on every snakemake call, and light scripts (train_adapter) start every
# training job: LLaMA-Factory's source is read, not imported (which would pull in torch and transformers,
# seconds each time). None when it is not installed where snakemake runs (e.g. only in the training env).


@functools.cache
def known_templates() -> frozenset[str] | None:
    """Template names registered in the installed LLaMA-Factory."""
    root = package_dir("llamafactory")
    if root is None:
        return None
    source = (root / "data" / "template.py").read_text(encoding="utf-8")
    return frozenset(re.findall(r'register_template\(\s*name="([^"]+)"', source))


NO_DEFAULT = object()  # a field that must be given, or whose default is computed (a factory, a call)


def dataclass_fields(path: Path) -> dict[str, object]:
    """Field -> default of every annotated class attribute in a source file: `x: int = 5`,
    `x: int = field(default=5, ...)`; NO_DEFAULT where the default is not a literal."""
    found = {}
    for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found.setdefault(node.target.id, _literal_default(node.value))
    return found


def _literal_default(value: ast.expr | None) -> object:
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        value = next((k.value for k in value.keywords if k.arg == "default"), None)
    try:
        return NO_DEFAULT if value is None else ast.literal_eval(value)
    except ValueError:
        return NO_DEFAULT


@functools.cache
def _train_fields() -> dict[str, object] | None:
    """Every argument `llamafactory-cli train` accepts, with its default: LLaMA-Factory's own hparams first
    (they override), then transformers' TrainingArguments."""
    lf_root, hf_root = package_dir("llamafactory"), package_dir("transformers")
    if lf_root is None or hf_root is None:
        return None
    files = [
        *sorted((lf_root / "hparams").glob("*.py")),
        hf_root / "training_args.py",
        hf_root / "training_args_seq2seq.py",
    ]
    found: dict[str, object] = {}
    for fields in (dataclass_fields(f) for f in files if f.exists()):
        found.update({k: v for k, v in fields.items() if k not in found})
    return found


def known_train_keys() -> frozenset[str] | None:
    fields = _train_fields()
    return None if fields is None else frozenset(fields)


def train_value(train: dict, key: str):
    """The value LLaMA-Factory trains with for `key`: the one in `train`, else its own default."""
    if key in train:
        return train[key]
    default = (_train_fields() or {}).get(key, NO_DEFAULT)
    if default is NO_DEFAULT:
        raise LookupError(f"the installed LLaMA-Factory has no literal default for {key!r}")
    return default


def train_args(
    train: dict,
    *,
    base_model: str,
    dataset: str,
    dataset_dir: str,
    template: str,
    output_dir: str,
    stage: str = "sft",
) -> dict:
    """The full `llamafactory-cli train` argument set for one experiment (SFT, or a preference stage)."""
    args = {
        "stage": stage,
        "do_train": True,
        "model_name_or_path": base_model,
        "dataset": f"{dataset}_train",
        "dataset_dir": dataset_dir,
        "template": template,
        "output_dir": output_dir,
        "plot_loss": True,
        "overwrite_cache": True,
    }
    args.update(train)
    return args


def export_args(*, base_model: str, adapter: str, template: str, export_dir: str, train: dict) -> dict:
    """`llamafactory-cli export` arguments that merge `adapter` into `base_model`."""
    args = {
        "model_name_or_path": base_model,
        "adapter_name_or_path": adapter,
        "template": template,
        "finetuning_type": train_value(train, "finetuning_type"),
        "export_dir": export_dir,
        "export_size": 5,
        "export_device": "cpu",
        "export_legacy_format": False,
        "trust_remote_code": train_value(train, "trust_remote_code"),
    }
    # The tokenizer must render prompts exactly as in training, system prompt included.
    if "default_system" in train:
        args["default_system"] = train["default_system"]
    return args


def _tree_stamp(path: str | Path) -> list:
    """Names, sizes and times of a model directory's files: a rebuilt model at the same path differs."""
    root = Path(path)
    files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else []
    return [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def _is_complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: without it (a kill while saving), resuming would crash."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def prepare_output_dir(
    out_dir: str | Path, args: dict, data_files: list[str], model_dirs: list[str], *, resume: bool = True
) -> None:
    """Keep LLaMA-Factory's checkpoints only for the very same run (an interrupted job may resume): the same
    arguments, data and starting models (a model rebuilt at the same path counts as another). Others would be
    resumed silently, so they are removed, and so are half-saved ones; with resume=False always (stage rm:
    LLaMA-Factory 0.9.5 cannot resume a value-head checkpoint). No stamp, no proof: checkpoints of unknown
    origin are not resumed either."""
    out = Path(out_dir)
    key = [
        args,
        [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in data_files],
        [_tree_stamp(d) for d in model_dirs],
    ]
    run_id = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    stamp = out / ".conch_run_id"
    if not resume or not stamp.exists() or stamp.read_text().strip() != run_id:
        for stale in out.glob("checkpoint-*"):
            shutil.rmtree(stale)
    for half_saved in [c for c in out.glob("checkpoint-*") if c.is_dir() and not _is_complete(c)]:
        shutil.rmtree(half_saved)
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(run_id + "\n")


# What the trainer writes into output_dir beside the model it saves (and conch's own files there).
TRAINER_FILES = (
    "checkpoint-*",
    "runs",
    "trainer_log.jsonl",
    "trainer_state.json",
    "training_args.bin",
    "*_results.json",
    "training_*.png",
    "train_config.yaml",
    ".conch_run_id",
)


def collect_model(out_dir: str | Path, model_dir: str | Path) -> Path:
    """Move the model full/freeze training saved into out_dir (weights, config, tokenizer, chat template)
    into model_dir, leaving the trainer's logs beside it, then drop the checkpoints: a finished run resumes
    nothing, and each holds the whole model plus optimizer state (about four times its size)."""
    out, model = Path(out_dir), Path(model_dir)
    keep = {f for pattern in TRAINER_FILES for f in out.glob(pattern)}
    files = [f for f in out.iterdir() if f not in keep and f != model]
    if not any(f.name == "config.json" for f in files):
        raise RuntimeError(f"{out} holds no saved model (config.json): did training finish?")
    model.mkdir(parents=True, exist_ok=True)
    for f in files:
        f.replace(model / f.name)
    for checkpoint in out.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    return model


def write_yaml(args: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(args, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def cli() -> list[str]:
    """The llamafactory-cli of the environment this process runs in (venv or conda env)."""
    exe = Path(sys.executable).with_name("llamafactory-cli")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("llamafactory-cli")
    return [found] if found else [sys.executable, "-m", "llamafactory.cli"]


def run(command: str, yaml_path: str | Path, log_path: str | Path, env: dict | None = None) -> None:
    """Run `llamafactory-cli <command> <yaml>`, appending its output to the log; fail loudly with the log's tail."""
    full_env = {**os.environ, **(env or {})}
    # Never phone home from a training job: the base model is already on disk.
    full_env.setdefault("HF_HUB_OFFLINE", "1")
    full_env.setdefault("DISABLE_VERSION_CHECK", "1")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ llamafactory-cli {command} {yaml_path}\n")
        log.flush()
        proc = subprocess.run(
            [*cli(), command, str(yaml_path)], stdout=log, stderr=subprocess.STDOUT, env=full_env, check=False
        )
    if proc.returncode != 0:
        tail = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise RuntimeError(
            f"llamafactory-cli {command} failed (exit {proc.returncode}); log {log_path}:\n" + "\n".join(tail)
        )
