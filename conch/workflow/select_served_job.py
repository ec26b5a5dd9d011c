"""Rule select_served: the deployment pointer, which experiment is served, why, and how to start it."""

import json
from pathlib import Path


def _read(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def run(input, output, params, log):
    best, serve, smoke, manifest = (
        _read(input.best),
        _read(input.serve[0]),
        _read(input.smoke[0]),
        _read(input.run_manifest),
    )
    if params.pinned:
        reason = f"pinned by serve.experiment (best by {best['metric']} is {best['best']})"
    elif len(best["values"]) == 1:
        reason = "the only experiment"
    else:
        reason = f"best by {best['metric']} ({best['mode']})"
    selected = {
        "experiment": params.experiment,
        "reason": reason,
        "metric": best["metric"],
        "value": best["values"].get(params.experiment),
        "model_path": serve["model_path"],
        "launch_command": serve["launch_command"],
        "smoke_test_passed": smoke["passed"],
        "finetuning_type": manifest["finetuning_type"],
        "trained_sha256": manifest["trained_weights"]["sha256"],
        "config_sha256": manifest["config_sha256"],
    }
    Path(output[0]).write_text(json.dumps(selected, indent=2) + "\n", encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"serving {params.experiment}: {reason}\n")
