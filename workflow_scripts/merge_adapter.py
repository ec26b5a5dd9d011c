"""Merge the adapter with `llamafactory-cli export`, then prove the merge: merged logits == base+adapter logits."""

import json
import sys
from pathlib import Path

import torch

from conch import lf
from conch.hub import base_model_path
from conch.modeling import load, render

base = base_model_path(snakemake.input.base)
adapter = str(Path(snakemake.input.adapter).parent)
args = lf.export_args(
    base_model=base,
    adapter=adapter,
    template=snakemake.params.template,
    export_dir=snakemake.output.model,
    train=snakemake.params.train,
)
lf.write_yaml(args, snakemake.output.export_yaml)
open(snakemake.log[0], "w").close()
lf.run("export", snakemake.output.export_yaml, snakemake.log[0])


def logits(model, tokenizer):
    texts = [render(tokenizer, [{"role": "user", "content": p}]) for p in snakemake.params.prompts]
    with torch.inference_mode():
        return [
            model(**tokenizer(t, return_tensors="pt", add_special_tokens=False)).logits.float() for t in texts
        ]


merged = logits(*load(snakemake.output.model, dtype=torch.float32))
unmerged = logits(*load(base, adapter=adapter, dtype=torch.float32))
diff = max((a - b).abs().max().item() for a, b in zip(merged, unmerged, strict=True))
check = {
    "prompts": snakemake.params.prompts,
    "max_abs_logit_diff": diff,
    "atol": snakemake.params.atol,
    "passed": diff <= snakemake.params.atol,
}
Path(snakemake.output.check).write_text(json.dumps(check, indent=2, ensure_ascii=False) + "\n")
with open(snakemake.log[0], "a", encoding="utf-8") as log:
    log.write(f"merge check: max |logit diff| = {diff:.3g} (atol {snakemake.params.atol})\n")
if not check["passed"]:
    Path(snakemake.output.check).unlink()
    sys.exit(
        f"merge_adapter: merged model differs from base+adapter by {diff:.3g} > atol {snakemake.params.atol}"
    )
