"""Build the offline default base model: tokenizer trained on the train split, seeded random Qwen2."""

import json

from conch.model.scratch import build_scratch_model
from conch.workflow.files import read_jsonl, write_json

arch = dict(snakemake.params.arch)
records = read_jsonl(snakemake.input.train)
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
write_json(snakemake.output.manifest, manifest)
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(f"built scratch model from {len(records)} records: {json.dumps(summary)}\n")
