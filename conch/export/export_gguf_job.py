"""Rule export_gguf: the merged model converted to GGUF (one file per type), each file proven against the
merged model, and the Ollama Modelfile. Files are written under a `.partial` name and renamed only once
every type has passed, so a failed or crashed job never leaves a .gguf that looks finished."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conch.errors import JobFailed
from conch.export import check
from conch.export.convert import convert, read_config
from conch.export.modelfile import gguf_modelfile
from conch.model.modeling import load, stop_token_ids


def run(input, output, params, log):
    merged = Path(input.model)
    finals = [Path(f) for f in output.gguf]
    partials = [f.with_name(f.name + ".partial") for f in finals]
    reference = load(str(merged), dtype=torch.float32)
    stop_ids = stop_token_ids(reference[1], reference[0])

    def export_and_check(out_type: str, partial: Path) -> tuple[dict, list[str]]:
        written = convert(merged, partial, out_type, name=params.name)
        result = check.compare(
            reference, check.load_gguf(partial), params.prompts, params.new_tokens, stop_ids
        )
        failed = check.verdict(out_type, result, params.min_top1, params.max_logit_error)
        return {**written, "bytes": partial.stat().st_size, **result, "passed": not failed}, failed

    report, failures = {}, {}
    try:
        for out_type, final, partial in zip(params.types, finals, partials, strict=True):
            report[out_type], failed = export_and_check(out_type, partial)
            report[out_type]["file"] = final.name
            if failed:
                failures[out_type] = failed
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise

    summary = {
        "model": str(merged),
        "prompts": params.prompts,
        "new_tokens": params.new_tokens,
        "min_top1": params.min_top1,
        "max_logit_error": params.max_logit_error,
        "types": report,
        "passed": not failures,
    }
    lines = [
        f"{t}: {r['bytes']} bytes, top-1 {r['top1_agreement']:.4f}, max |logit diff| "
        f"{r['max_abs_logit_diff']:.4g}, greedy identical {r['greedy_identical']}, tokenizer round trip "
        f"{r['tokenizer_round_trip']}"
        for t, r in report.items()
    ]
    Path(log).write_text(
        "\n".join([*lines, json.dumps(summary, indent=2, ensure_ascii=False)]) + "\n", encoding="utf-8"
    )
    if failures:
        for partial in partials:
            partial.unlink(missing_ok=True)
        reasons = "; ".join(f"{t}: {', '.join(why)}" for t, why in failures.items())
        raise JobFailed(f"export_gguf: GGUF check failed ({reasons}); details in {log}")

    for partial, final in zip(partials, finals, strict=True):
        partial.replace(final)
    source = merged / "Modelfile"
    context = read_config(merged)["max_position_embeddings"]
    modelfile = gguf_modelfile(source.read_text(encoding="utf-8"), finals[0].name, context, str(source))
    Path(output.modelfile).write_text(modelfile, encoding="utf-8")
    Path(output.check).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
