"""The deployment pointer: which experiment is served, why, and how to start it."""

import json
from pathlib import Path

inp, p = snakemake.input, snakemake.params
best = json.loads(Path(inp.best).read_text(encoding="utf-8"))
serve = json.loads(Path(inp.serve[0]).read_text(encoding="utf-8"))
smoke = json.loads(Path(inp.smoke[0]).read_text(encoding="utf-8"))
run = json.loads(Path(inp.run_manifest).read_text(encoding="utf-8"))

if p.pinned:
    reason = f"pinned by serve.experiment (best by {best['metric']} is {best['best']})"
elif len(best["values"]) == 1:
    reason = "the only experiment"
else:
    reason = f"best by {best['metric']} ({best['mode']})"
selected = {
    "experiment": p.experiment,
    "reason": reason,
    "metric": best["metric"],
    "value": best["values"].get(p.experiment),
    "model_path": serve["model_path"],
    "launch_command": serve["launch_command"],
    "smoke_test_passed": smoke["passed"],
    "finetuning_type": run["finetuning_type"],
    "trained_sha256": run["trained_weights"]["sha256"],
    "config_sha256": run["config_sha256"],
}
Path(snakemake.output[0]).write_text(json.dumps(selected, indent=2) + "\n", encoding="utf-8")
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(f"serving {p.experiment}: {reason}\n")
