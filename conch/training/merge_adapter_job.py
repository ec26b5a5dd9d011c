"""Rule merge_adapter: the adapter merged with `llamafactory-cli export`, then the merge proven: merged logits
== base+adapter logits within a tolerance scaled to the logits and the stored dtype, and the same greedy
tokens (conch/training/merge_check.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conch.errors import JobFailed
from conch.jobs.progress import Progress
from conch.llamafactory import lf
from conch.model.hub import base_model_path
from conch.model.modeling import load
from conch.training.merge_check import compare, prompt_logits, stored_dtype


def run(input, output, params, log, wildcards):
    p = params
    base = base_model_path(input.base)
    adapter = str(Path(input.adapter).parent)
    args = lf.export_args(
        base_model=base, adapter=adapter, template=p.template, export_dir=output.model, train=p.train
    )
    lf.write_yaml(args, output.export_yaml)
    open(log, "w").close()
    progress = Progress(f"merge_adapter {wildcards.experiment}", total=3, unit="stage")
    progress.update(0, note="llamafactory-cli export")
    lf.run("export", output.export_yaml, log)

    progress.update(1, note="merged model logits")
    merged = prompt_logits(*load(output.model, dtype=torch.float32), p.prompts)
    progress.update(2, note="base + adapter logits")
    unmerged = prompt_logits(*load(base, adapter=adapter, dtype=torch.float32), p.prompts)
    dtype = stored_dtype(output.model)
    rtol = p.rtol.get(dtype, max(p.rtol.values()))
    result = compare(merged, unmerged, atol=p.atol, rtol=rtol)
    progress.close(note="checked")
    check = {"check_prompts": p.prompts, "stored_dtype": dtype, "atol": p.atol, "rtol": rtol, **result}
    Path(output.check).write_text(json.dumps(check, indent=2, ensure_ascii=False) + "\n")
    summary = (
        f"merge check: max |logit diff| {result['max_abs_logit_diff']:.3g} against tolerance "
        f"{result['max_tolerance_used']:.3g} (atol {p.atol} + rtol {rtol} x logit scale, {dtype}); "
        f"greedy agreement {result['greedy_agreement']:.3f}"
    )
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(summary + "\n")
    if not check["passed"]:
        Path(output.check).with_suffix(".failed.json").write_text(Path(output.check).read_text())
        Path(output.check).unlink()
        raise JobFailed(f"merge_adapter: the merged model is not base + adapter: {summary}")
