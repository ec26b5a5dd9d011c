"""Build the offline default base model: tokenizer trained on the train split, seeded random Qwen2."""

import json
from pathlib import Path

from conch.scratch import build_scratch_model

arch = dict(snakemake.params.arch)
records = [json.loads(line) for line in Path(snakemake.input.train).read_text(encoding="utf-8").splitlines()]
summary = build_scratch_model(
    records,
    snakemake.output.model,
    arch={k: v for k, v in arch.items() if k not in ("seed", "vocab_size")},
    vocab_size=arch["vocab_size"],
    seed=arch["seed"],
    template=snakemake.params.template,
    default_system=snakemake.params.default_system,
)
manifest = {"source": "scratch", "path": snakemake.output.model, **summary}
Path(snakemake.output.manifest).write_text(json.dumps(manifest, indent=2) + "\n")
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(f"built scratch model from {len(records)} records: {json.dumps(summary)}\n")
