"""Dequantize a GGUF base model once into results/base_model/model (float32 HF directory + tokenizer)."""

import json
import sys

from conch.errors import ConchError
from conch.model.dequantize import dequantize, describe
from conch.model.hub import write_manifest

p = snakemake.params
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    try:
        facts = dequantize(
            snakemake.input.gguf, snakemake.output.model, template=p.template, default_system=p.default_system
        )
    except ConchError as err:
        log.write(f"{err}\n")
        sys.exit(f"dequantize_gguf: {err}")
    write_manifest({"source": "gguf", "path": snakemake.output.model, **facts}, snakemake.output.manifest)
    log.write(f"dequantized {facts['gguf']} (sha256 {facts['sha256']}): {describe(facts)}\n")
    for repair in facts["tokenizer_repairs"]:
        log.write(f"tokenizer repaired from the GGUF's own ids: {repair}\n")
    log.write(json.dumps(facts, indent=1) + "\n")
