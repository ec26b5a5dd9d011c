"""Base models from the Hugging Face hub, a local directory or a GGUF file, recorded in a manifest.

huggingface_hub itself honours HF_ENDPOINT (mirrors), HF_HOME (cache) and HF_TOKEN (gated repos); we only
make sure the token never lands in what we write.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from conch.errors import ConfigError

# Weights, config and tokenizer; skips the other formats repos often carry (.bin, .gguf, .onnx).
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.jinja"]
# A local model's weights; their content hashes are the base-model rule's inputs (see weights_sha256).
WEIGHT_PATTERNS = ["*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf"]
SHA256_CACHE = Path(".snakemake") / "conch" / "sha256.json"
URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def base_model_path(manifest: str | Path) -> str:
    """The model directory a base-model manifest (scratch, hf or local) points to."""
    return json.loads(Path(manifest).read_text(encoding="utf-8"))["path"]


def redact(text: str) -> str:
    """Remove secrets from text that will be written to a log or result."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CONCH_API_KEY", "OPENAI_API_KEY"):
        secret = os.environ.get(var)
        if secret and len(secret) >= 4:
            text = text.replace(secret, f"<{var}>")
    # A mirror URL may carry its own login (HF_ENDPOINT=https://user:password@mirror/): drop it.
    return URL_CREDENTIALS.sub(r"\1<credentials>@", text)


def _download_mb(repo_id: str, revision: str) -> int | None:
    """Megabytes the snapshot will take (the files MODEL_PATTERNS selects); None when the hub cannot say."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception:  # offline, gated, a mirror without the API: the download itself reports the problem
        return None
    sizes = [f.size or 0 for f in info.siblings if any(fnmatch(f.rfilename, p) for p in MODEL_PATTERNS)]
    return max(1, sum(sizes) >> 20)


def _cached_mb(repo_id: str) -> int:
    from huggingface_hub import constants

    blobs = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "blobs"
    return sum(f.stat().st_size for f in blobs.glob("*") if f.is_file()) >> 20 if blobs.is_dir() else 0


def fetch(repo_id: str, revision: str = "main") -> dict:
    """Download (or find in the cache) a model snapshot; return its manifest."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import disable_progress_bars

    from conch.jobs.progress import Progress, follow

    disable_progress_bars()  # one bar per file; the job shows one line of its own instead
    start_mb = _cached_mb(repo_id)
    total = None if os.environ.get("HF_HUB_OFFLINE") else _download_mb(repo_id, revision)
    progress = Progress(f"fetch_hf_model {repo_id}", total=total, unit="MB")
    try:
        with follow(lambda: _cached_mb(repo_id) - start_mb, progress):
            path = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=MODEL_PATTERNS)
    except LocalEntryNotFoundError as err:
        raise ConfigError(
            f"base_model.repo_id {repo_id!r} (revision {revision!r}) is not in the local cache "
            f"and cannot be downloaded now ({redact(str(err).splitlines()[0])}); "
            "check the network, HF_ENDPOINT or HF_HUB_OFFLINE"
        ) from None
    except HfHubHTTPError as err:
        raise ConfigError(
            f"base_model.repo_id {repo_id!r}: the hub refused the download ({redact(str(err).splitlines()[0])}); "
            "for a gated model set HF_TOKEN"
        ) from None
    progress.close()
    return {
        "source": "hf",
        "repo_id": repo_id,
        "revision": revision,
        # The snapshot folder is named after the resolved commit: the exact weights used.
        "commit": Path(path).name,
        "endpoint": os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
        "path": str(path),
    }


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path: str | Path, cache: Path = SHA256_CACHE) -> str:
    """sha256 of a file, re-read only when its size, times or inode change (a content change moves ctime).

    Snakemake computes base-model inputs on every call; hashing gigabytes each time would cost seconds.
    """
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(path))
    if entry and entry["stamp"] == stamp:
        return entry["sha256"]
    known[str(path)] = {"stamp": stamp, "sha256": file_sha256(path)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
    tmp.replace(cache)
    return known[str(path)]["sha256"]


def weight_files(path: str | Path) -> list[str]:
    """The weight files of a local model directory, or the file itself for a single-file model (GGUF)."""
    root = Path(path)
    if root.is_file():
        return [str(root)]
    return sorted(str(f) for pattern in WEIGHT_PATTERNS for f in root.glob(pattern) if f.is_file())


def weights_sha256(path: str | Path) -> dict[str, str] | None:
    """{file name: sha256} of a model's weights; None while the path does not exist (Snakemake then names
    the missing input). A base-model rule's param: new weights rerun it and all that depends on it, even
    when copied with an older timestamp than the results."""
    files = weight_files(path)
    return {Path(f).name: cached_sha256(f) for f in files} or None


def local(path: str) -> dict:
    model_dir = Path(path)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(
            f"base_model.path {path!r}: no config.json there; point it at a Hugging Face model directory"
        )
    weights = weights_sha256(model_dir)
    if not weights:
        raise ConfigError(
            f"base_model.path {path!r}: no weight files ({', '.join(WEIGHT_PATTERNS)}) beside config.json"
        )
    return {"source": "local", "path": str(model_dir.resolve()), "weights_sha256": weights}


def write_manifest(manifest: dict, out: str | Path) -> None:
    Path(out).write_text(redact(json.dumps(manifest, indent=2)) + "\n", encoding="utf-8")
