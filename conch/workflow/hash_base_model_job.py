"""Rule hash_base_model: sha256 of the base model's weight files, computed once and shared by every
experiment's run manifest."""

import json
from pathlib import Path

from conch.model.hub import base_model_path
from conch.workflow.provenance import weights_sha256


def run(input, output, log):
    path = base_model_path(input.base)
    hashes = {"path": path, **weights_sha256(path)}
    Path(output[0]).write_text(json.dumps(hashes, indent=2) + "\n", encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"{path}: {len(hashes['files'])} weight file(s), sha256 {hashes['sha256']}\n")
