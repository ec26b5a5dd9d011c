"""Fetch the base model from the Hugging Face hub (or its local cache) and record the exact commit."""

import sys

from conch.errors import ConchError
from conch.hub import fetch, redact, write_manifest

with open(snakemake.log[0], "w", encoding="utf-8") as log:
    try:
        manifest = fetch(snakemake.params.repo_id, snakemake.params.revision)
    except ConchError as err:
        log.write(f"{err}\n")
        sys.exit(f"fetch_hf_model: {err}")
    write_manifest(manifest, snakemake.output.manifest)
    log.write(redact(f"fetched {manifest['repo_id']}@{manifest['commit']} into {manifest['path']}\n"))
