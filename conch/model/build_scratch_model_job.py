"""Rule build_scratch_model: the offline default base model, a tokenizer trained on the train split and a
seeded random Qwen2 (conch/model/scratch.py)."""

import json

from conch.jobs.files import read_jsonl, write_json
from conch.model.scratch import build_scratch_model


def run(input, output, params, log):
    arch = dict(params.arch)
    records = read_jsonl(input.train)
    summary = build_scratch_model(
        records,
        output.model,
        arch={k: v for k, v in arch.items() if k not in ("seed", "vocab_size")},
        vocab_size=arch["vocab_size"],
        seed=arch["seed"],
        template=params.template,
        default_system=params.default_system,
    )
    write_json(output.manifest, {"source": "scratch", "path": output.model, **summary})
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"built scratch model from {len(records)} records: {json.dumps(summary)}\n")
