"""Base models from the Hugging Face hub or a local directory, recorded in a manifest.

huggingface_hub itself honours HF_ENDPOINT (mirrors), HF_HOME (cache) and HF_TOKEN (gated repos); we only
make sure the token never lands in what we write.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from conch.errors import ConfigError

# Weights, config and tokenizer; skips the other formats repos often carry (.bin, .gguf, .onnx).
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.jinja"]
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


def fetch(repo_id: str, revision: str = "main") -> dict:
    """Download (or find in the cache) a model snapshot; return its manifest."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
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
    return {
        "source": "hf",
        "repo_id": repo_id,
        "revision": revision,
        # The snapshot folder is named after the resolved commit: the exact weights used.
        "commit": Path(path).name,
        "endpoint": os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
        "path": str(path),
    }


def local(path: str) -> dict:
    model_dir = Path(path)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(
            f"base_model.path {path!r}: no config.json there; point it at a Hugging Face model directory"
        )
    return {"source": "local", "path": str(model_dir.resolve())}


def write_manifest(manifest: dict, out: str | Path) -> None:
    Path(out).write_text(redact(json.dumps(manifest, indent=2)) + "\n", encoding="utf-8")
