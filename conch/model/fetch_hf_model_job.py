"""Rule fetch_hf_model: the base model from the Hugging Face hub (or its local cache), its exact commit
recorded."""

from conch.errors import ConchError, JobFailed
from conch.model.hub import fetch, redact, write_manifest


def run(output, params, log):
    with open(log, "w", encoding="utf-8") as fh:
        try:
            manifest = fetch(params.repo_id, params.revision)
        except ConchError as err:
            raise JobFailed(f"fetch_hf_model failed: {err}") from err
        write_manifest(manifest, output.manifest)
        fh.write(redact(f"fetched {manifest['repo_id']}@{manifest['commit']} into {manifest['path']}\n"))
