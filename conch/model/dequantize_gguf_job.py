"""Rule dequantize_gguf: a GGUF base model dequantized once into results/base_model/model (a float32 HF
directory + tokenizer)."""

import json

from conch.errors import ConchError, JobFailed
from conch.model.dequantize import dequantize, describe
from conch.model.hub import write_manifest


def run(input, output, params, log):
    with open(log, "w", encoding="utf-8") as fh:
        try:
            facts = dequantize(
                input.gguf, output.model, template=params.template, default_system=params.default_system
            )
        except ConchError as err:
            raise JobFailed(f"dequantize_gguf: {err}") from err
        write_manifest({"source": "gguf", "path": output.model, **facts}, output.manifest)
        fh.write(f"dequantized {facts['gguf']} (sha256 {facts['sha256']}): {describe(facts)}\n")
        for repair in facts["tokenizer_repairs"]:
            fh.write(f"tokenizer repaired from the GGUF's own ids: {repair}\n")
        fh.write(json.dumps(facts, indent=1) + "\n")
