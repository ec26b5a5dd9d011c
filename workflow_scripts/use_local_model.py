"""Record a local model directory as the base model."""

import sys

from conch.errors import ConchError
from conch.hub import local, write_manifest

with open(snakemake.log[0], "w", encoding="utf-8") as log:
    try:
        manifest = local(snakemake.params.path)
    except ConchError as err:
        log.write(f"{err}\n")
        sys.exit(f"use_local_model: {err}")
    write_manifest(manifest, snakemake.output.manifest)
    log.write(f"using local model {manifest['path']}\n")
