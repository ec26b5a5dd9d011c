"""Record a local model directory as the base model."""

from conch.errors import reported
from conch.model.hub import local, write_manifest

with open(snakemake.log[0], "w", encoding="utf-8") as log:
    with reported("use_local_model", log):
        manifest = local(snakemake.params.path)
    write_manifest(manifest, snakemake.output.manifest)
    log.write(f"using local model {manifest['path']}\n")
