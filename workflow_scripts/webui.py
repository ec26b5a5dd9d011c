"""What `make webui` opens LLaMA-Factory's web UI on: the registered splits, the base model, its template."""

import json
from pathlib import Path

from conch.model.hub import base_model_path
from conch.training.webui import launch_settings

settings = launch_settings(
    snakemake.input.dataset_info, base_model_path(snakemake.input.base), snakemake.params.template
)
Path(snakemake.output[0]).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(f"web UI on {settings['datasets']} and {settings['model_path']} ({settings['template']})\n")
