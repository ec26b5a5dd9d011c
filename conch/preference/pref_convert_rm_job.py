"""Rule convert_reward_model: LLaMA-Factory's reward model (LoRA adapter + value head) -> a
sequence-classification model, proven equal.

The proof: LLaMA-Factory's own `do_predict` scores the held-out pairs with the adapter it trained, and the
converted model must give the same chosen and rejected scores (LLaMA-Factory rounds them to 2 decimals).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conch.errors import JobFailed
from conch.jobs.files import read_jsonl
from conch.llamafactory import lf
from conch.preference.reward import convert_lf_reward_model, load_reward_model
from conch.preference.scoring import answer_suffix, encode, pair_rewards, rendered_pairs
from conch.preference.stages import stage_args

ATOL = 0.011  # LLaMA-Factory writes scores rounded to 2 decimals


def run(input, output, params, log):
    adapter = str(Path(input.adapter).parent)
    out_model = Path(output.model)
    open(log, "w").close()
    summary = convert_lf_reward_model(input.sft_model, adapter, out_model)

    split = "test" if Path(input.test).stat().st_size > 0 else "train"
    records = read_jsonl(input.test if split == "test" else input.train)
    predict_dir = out_model.parent / "lf_predict"
    args = predict_args(input, params, adapter, split, predict_dir)
    lf.write_yaml(args, output.predict_yaml)
    lf.run("train", output.predict_yaml, log)
    lf_scores = read_jsonl(predict_dir / "generated_predictions.jsonl")
    if len(lf_scores) != len(records):
        raise JobFailed(
            f"convert_reward_model: LLaMA-Factory scored {len(lf_scores)} of {len(records)} {split} pairs"
        )

    model, tokenizer = load_reward_model(out_model)
    prompts, chosen, rejected = rendered_pairs(tokenizer, records)
    suffix = answer_suffix(tokenizer)
    # LLaMA-Factory truncates pairs longer than cutoff_len; compare only those it saw whole.
    cutoff = lf.train_value(args, "cutoff_len")
    whole = [
        i
        for i in range(len(records))
        if max(len(encode(tokenizer, prompts[i], a, suffix)[0]) for a in (chosen[i], rejected[i])) <= cutoff
    ]
    ours_c = pair_rewards(model, tokenizer, [prompts[i] for i in whole], [chosen[i] for i in whole])
    ours_r = pair_rewards(model, tokenizer, [prompts[i] for i in whole], [rejected[i] for i in whole])
    diffs = [
        max(abs(c - lf_scores[i]["chosen"]), abs(r - lf_scores[i]["rejected"]))
        for i, c, r in zip(whole, ours_c, ours_r, strict=True)
    ]
    n = max(len(whole), 1)
    check = {
        "split": split,
        "pairs_compared": len(whole),
        "pairs_truncated_by_cutoff_len": len(records) - len(whole),
        "max_abs_score_diff": max(diffs, default=0.0),
        "atol": ATOL,
        "lf_accuracy": sum(lf_scores[i]["chosen"] > lf_scores[i]["rejected"] for i in whole) / n,
        "converted_accuracy": sum(c > r for c, r in zip(ours_c, ours_r, strict=True)) / n,
        "score_bias": summary["score_bias"],
    }
    check["passed"] = bool(whole) and check["max_abs_score_diff"] <= ATOL
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"conversion check: {json.dumps(check)}\n")
    if not check["passed"]:
        raise JobFailed(
            f"convert_reward_model: converted scores differ from LLaMA-Factory's by "
            f"{check['max_abs_score_diff']:.3g} > {ATOL} on {len(whole)} pairs; see {log}"
        )
    Path(output.check).write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")


def predict_args(input, params, adapter: str, split: str, predict_dir: Path) -> dict:
    """LLaMA-Factory's arguments to score the `split` pairs with the reward adapter it trained."""
    args = stage_args(
        "rm",
        params.train,
        start_from="merged",
        sft_model=input.sft_model,
        base_model=input.sft_model,
        sft_adapter=adapter,
        dataset=params.dataset,
        dataset_dir=str(Path(input.dataset_info).parent),
        template=params.template,
        output_dir=str(predict_dir),
        with_val=False,
    )
    args.pop("dataset")
    args.update(
        do_train=False,
        do_predict=True,
        adapter_name_or_path=adapter,
        eval_dataset=f"{params.dataset}_{split}",
    )
    if not torch.cuda.is_available():
        args["bf16"] = args["fp16"] = False
    return args
