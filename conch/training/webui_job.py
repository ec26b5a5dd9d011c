"""Rule webui: what `make webui` opens LLaMA-Factory's web UI on, the registered splits, the base model and
its template (conch/training/webui.py)."""

import json
from pathlib import Path

from conch.model.hub import base_model_path
from conch.training.webui import launch_settings


def run(input, output, params, log):
    settings = launch_settings(input.dataset_info, base_model_path(input.base), params.template)
    Path(output[0]).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"web UI on {settings['datasets']} and {settings['model_path']} ({settings['template']})\n")
