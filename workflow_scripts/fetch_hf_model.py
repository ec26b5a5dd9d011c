"""Fetch the base model from the Hugging Face hub (or its local cache) and record the exact commit."""

from conch.errors import reported
from conch.model.hub import fetch, redact, write_manifest

with open(snakemake.log[0], "w", encoding="utf-8") as log:
    with reported("fetch_hf_model", log):
        manifest = fetch(snakemake.params.repo_id, snakemake.params.revision)
    write_manifest(manifest, snakemake.output.manifest)
    log.write(redact(f"fetched {manifest['repo_id']}@{manifest['commit']} into {manifest['path']}\n"))
