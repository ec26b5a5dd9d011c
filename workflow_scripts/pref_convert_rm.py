"""LLaMA-Factory reward model (LoRA adapter + value head) -> sequence-classification model, proven equal.

The proof: LLaMA-Factory's own `do_predict` scores the held-out pairs with the adapter it trained, and the
converted model must give the same chosen and rejected scores (LLaMA-Factory rounds them to 2 decimals).
"""

import json
import sys
from pathlib import Path

import torch

from conch.preference.reward import convert_lf_reward_model, load_reward_model
from conch.preference.scoring import answer_suffix, encode, pair_rewards, rendered_pairs
from conch.preference.stages import stage_args
from conch.training import lf
from conch.workflow.files import read_jsonl

ATOL = 0.011  # LLaMA-Factory writes scores rounded to 2 decimals
p = snakemake.params
adapter = str(Path(snakemake.input.adapter).parent)
out_model = Path(snakemake.output.model)
open(snakemake.log[0], "w").close()
summary = convert_lf_reward_model(snakemake.input.sft_model, adapter, out_model)

split = "test" if Path(snakemake.input.test).stat().st_size > 0 else "train"
pairs_file = snakemake.input.test if split == "test" else snakemake.input.train
records = read_jsonl(pairs_file)
predict_dir = out_model.parent / "lf_predict"
args = stage_args(
    "rm",
    p.train,
    start_from="merged",
    sft_model=snakemake.input.sft_model,
    base_model=snakemake.input.sft_model,
    sft_adapter=adapter,
    dataset=p.dataset,
    dataset_dir=str(Path(snakemake.input.dataset_info).parent),
    template=p.template,
    output_dir=str(predict_dir),
    with_val=False,
)
args.pop("dataset")
args.update(
    do_train=False, do_predict=True, adapter_name_or_path=adapter, eval_dataset=f"{p.dataset}_{split}"
)
if not torch.cuda.is_available():
    args["bf16"] = args["fp16"] = False
lf.write_yaml(args, snakemake.output.predict_yaml)
lf.run("train", snakemake.output.predict_yaml, snakemake.log[0])
lf_scores = read_jsonl(predict_dir / "generated_predictions.jsonl")
if len(lf_scores) != len(records):
    sys.exit(f"convert_reward_model: LLaMA-Factory scored {len(lf_scores)} of {len(records)} {split} pairs")

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
check = {
    "split": split,
    "pairs_compared": len(whole),
    "pairs_truncated_by_cutoff_len": len(records) - len(whole),
    "max_abs_score_diff": max(diffs, default=0.0),
    "atol": ATOL,
    "lf_accuracy": sum(lf_scores[i]["chosen"] > lf_scores[i]["rejected"] for i in whole) / max(len(whole), 1),
    "converted_accuracy": sum(c > r for c, r in zip(ours_c, ours_r, strict=True)) / max(len(whole), 1),
    "score_bias": summary["score_bias"],
}
check["passed"] = bool(whole) and check["max_abs_score_diff"] <= ATOL
with open(snakemake.log[0], "a", encoding="utf-8") as log:
    log.write(f"conversion check: {json.dumps(check)}\n")
if not check["passed"]:
    sys.exit(
        f"convert_reward_model: converted scores differ from LLaMA-Factory's by {check['max_abs_score_diff']:.3g} "
        f"> {ATOL} on {len(whole)} pairs; see {snakemake.log[0]}"
    )
Path(snakemake.output.check).write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
