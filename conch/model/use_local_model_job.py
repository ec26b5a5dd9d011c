"""Rule use_local_model: a local model directory recorded as the base model."""

from conch.errors import ConchError, JobFailed
from conch.model.hub import local, write_manifest


def run(output, params, log):
    with open(log, "w", encoding="utf-8") as fh:
        try:
            manifest = local(params.path)
        except ConchError as err:
            raise JobFailed(f"use_local_model failed: {err}") from err
        write_manifest(manifest, output.manifest)
        fh.write(f"using local model {manifest['path']}\n")
