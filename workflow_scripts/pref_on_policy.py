"""Rule build_on_policy_pairs: the given train/val pairs' chosen answers against the SFT model's own answers,
written as a LLaMA-Factory pairwise dataset (plus its KTO unpairing) for DPO/KTO and the reward model."""

import json
import sys
from pathlib import Path

from conch.cluster import gpus
from conch.errors import ConchError
from conch.preference.on_policy import build
from conch.preference.prepare import PreferenceResult, unpaired

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
p = snakemake.params


def read(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


with open(snakemake.log[0], "w", encoding="utf-8") as log:
    try:
        pairs, stats, answers = build(
            snakemake.input.sft_model,
            {"train": read(snakemake.input.train), "val": read(snakemake.input.val)},
            max_new_tokens=p.max_new_tokens,
            batch_size=p.batch_size,
        )
    except ConchError as e:
        log.write(f"build_on_policy_pairs failed: {e}\n")
        sys.exit(f"build_on_policy_pairs failed: {e}")
    kto = {split: unpaired(split_pairs) for split, split_pairs in pairs.items()}
    PreferenceResult(pairs, kto, [], stats).write(Path(snakemake.output.stats).parent, p.dataset)
    log.write(
        f"build_on_policy_pairs: {stats['splits']} on-policy pairs from {stats['prompts']} prompts; the SFT "
        f"model's answer equals chosen on {stats['answer_equals_chosen']}\n"
    )
    for pair in pairs["train"][:10]:
        log.write(
            f"  {pair['messages'][-1]['content']!r}: {pair['chosen']['content']!r} over {pair['rejected']['content']!r}\n"
        )
