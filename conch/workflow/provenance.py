"""What a run manifest records so a result can be traced and repeated: hashes of files and settings, of the
installed package set, of the workflow code (commit, plus the uncommitted diff) and of the base weights.

Standard library only: run_manifest is a local job that must not wait for torch to import.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

# Versions worth reading at a glance; the whole installed set is hashed by package_set().
PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "llamafactory",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "bitsandbytes",
    "snakemake",
)
# Files that hold a model's weights, in the formats transformers, LLaMA-Factory and llama.cpp read.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj) -> str:
    """Hash of a JSON-able object that does not depend on key order or whitespace."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def package_set() -> dict:
    """Every distribution installed where this runs, as `name==version` (the environment's `pip freeze`),
    with their count and one hash: two manifests with the same hash ran the same packages, and two that
    differ show which by their pins."""
    pins = sorted(
        {
            f"{re.sub(r'[-_.]+', '-', dist.metadata['Name'] or '?').lower()}=={dist.version}"
            for dist in metadata.distributions()
        }
    )
    return {"count": len(pins), "sha256": hashlib.sha256("\n".join(pins).encode()).hexdigest(), "pins": pins}


def git_state(repo: str | Path) -> dict:
    """Commit of the workflow code, whether tracked files differ from it, and when they do a hash of that
    difference (`git diff HEAD`, binary included): the code a dirty checkout ran is pinned too. Nulls
    outside a git checkout."""

    def git(*args) -> bytes | None:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
        return proc.stdout if proc.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no") if commit else None
        diff = git("diff", "HEAD", "--binary", "--no-ext-diff") if status else None
    except OSError:  # no git binary
        commit = status = diff = None
    return {
        "commit": commit.decode().strip() if commit else None,
        "dirty": None if status is None else bool(status.strip()),
        "diff_sha256": hashlib.sha256(diff).hexdigest() if diff else None,
    }


def weights_sha256(path: str | Path) -> dict:
    """sha256 of each weight file of a model (a directory, or one file such as a .gguf) and one hash over
    them all, so any change to the weights, however small, shows."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
    hashes = {
        (f.name if f == root else str(f.relative_to(root))): sha256_file(f)
        for f in files
        if f.suffix in WEIGHT_SUFFIXES
    }
    if not hashes:
        raise FileNotFoundError(f"no weight file ({', '.join(WEIGHT_SUFFIXES)}) in {root}")
    return {"sha256": sha256_json(hashes), "files": hashes}


def base_model_revision(manifest: dict) -> str:
    """What pins the base weights: the hub commit, the scratch seed, or the local directory."""
    if manifest.get("source") == "hf":
        return f"{manifest.get('repo_id')}@{manifest.get('commit')}"
    if manifest.get("source") == "scratch":
        return f"scratch seed {manifest.get('seed')}"
    return f"local {manifest.get('path')}"
