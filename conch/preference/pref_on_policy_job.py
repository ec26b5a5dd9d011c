"""Rule build_on_policy_pairs: the given train/val pairs' chosen answers against the SFT model's own answers,
written as a LLaMA-Factory pairwise dataset (plus its KTO unpairing) for DPO/KTO and the reward model."""

import json
from pathlib import Path

from conch.cluster import gpus
from conch.errors import ConchError, JobFailed
from conch.preference.on_policy import build
from conch.preference.prepare import PreferenceResult, unpaired


def _read(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def run(input, output, params, log, resources, config):
    _gpus = gpus.assign_for(resources, config)  # held until the job ends; set before CUDA starts
    with open(log, "w", encoding="utf-8") as fh:
        try:
            pairs, stats, _answers = build(
                input.sft_model,
                {"train": _read(input.train), "val": _read(input.val)},
                max_new_tokens=params.max_new_tokens,
                batch_size=params.batch_size,
            )
        except ConchError as e:
            raise JobFailed(f"build_on_policy_pairs failed: {e}") from e
        kto = {split: unpaired(split_pairs) for split, split_pairs in pairs.items()}
        PreferenceResult(pairs, kto, [], stats).write(Path(output.stats).parent, params.dataset)
        fh.write(
            f"build_on_policy_pairs: {stats['splits']} on-policy pairs from {stats['prompts']} prompts; the "
            f"SFT model's answer equals chosen on {stats['answer_equals_chosen']}\n"
        )
        for pair in pairs["train"][:10]:
            fh.write(
                f"  {pair['messages'][-1]['content']!r}: {pair['chosen']['content']!r} over "
                f"{pair['rejected']['content']!r}\n"
            )
