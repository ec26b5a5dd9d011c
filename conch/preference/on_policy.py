"""On-policy preference pairs: the SFT model's own answers to the training prompts as the rejected side.

The given pairs reject answers the SFT model never gives (a generic assistant's "I am ChatGPT..."), so DPO,
the reward model and PPO learn to push down something the model does not say, and on held-out prompts the
SFT model's own answers keep winning (docs/preference.md, Evaluation). The field's answer is on-policy data:
pair each training prompt's reference answer (chosen) with what the model being aligned says to it
(rejected), as SPIN (Chen et al., 2024, "Self-Play Fine-Tuning") and online/iterative DPO do. Training then
moves probability from the SFT model's answers to the preferred ones, which is what the held-out pairs
against the SFT model's answers measure.

The answers are greedy and capped at preference.eval.max_new_tokens, exactly as evaluate_preference
generates the SFT model's answers to the held-out prompts, so training and evaluation reject the same
kind of answer. Only the train and val splits get pairs: held-out prompts stay unseen.
"""

from __future__ import annotations

import json

from conch.data.records import fold
from conch.errors import DataError
from conch.model.modeling import generate, load
from conch.preference.pairs import context
from conch.preference.scoring import rendered_pairs

SPLITS = ("train", "val")


def against_answers(pairs: list[dict], answers: list[str]) -> list[dict]:
    """Each pair with the model's answer to its prompt as the rejected side; pairs whose answer is the
    chosen one (after casefold and whitespace collapse), or empty, are left out: nothing to prefer there."""
    return [
        {**pair, "rejected": {"role": "assistant", "content": answer}}
        for pair, answer in zip(pairs, answers, strict=True)
        if answer.strip() and fold(answer) != fold(pair["chosen"]["content"])
    ]


def reference_pairs(pairs: list[dict]) -> list[dict]:
    """One pair per distinct (prompt, chosen): a prompt given with several rejected sides is asked once."""
    seen, out = set(), []
    for pair in pairs:
        key = json.dumps([context(pair), fold(pair["chosen"]["content"])], ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(pair)
    return out


def build(model_path: str, splits: dict[str, list[dict]], *, max_new_tokens: int, batch_size: int):
    """(on-policy pairs per split, stats, the SFT model's answers per split) from the given pairs of the
    train and val splits; the test split is left empty (evaluate_preference pairs held-out prompts itself)."""
    model, tokenizer = load(model_path)
    pairs, answers, counts = {}, {}, {}
    for split in SPLITS:
        references = reference_pairs(splits[split])
        prompts = rendered_pairs(tokenizer, references)[0]
        answers[split] = generate(model, tokenizer, prompts, max_new_tokens, batch_size) if prompts else []
        pairs[split] = [
            {**pair, "id": f"{pair['id']}-on-policy", "source": f"on_policy:{pair['source']}"}
            for pair in against_answers(references, answers[split])
        ]
        counts[split] = {"prompts": len(references), "pairs": len(pairs[split])}
    if not pairs["train"]:
        raise DataError(
            f"no on-policy pairs: the SFT model ({model_path}) answers every one of the "
            f"{counts['train']['prompts']} train prompts with its chosen answer (or the train split has no "
            "pairs, only KTO records, which give no reference answer); set preference.pairs: given"
        )
    pairs["test"] = []
    stats = {
        "pairs": "on_policy",
        "sft_model": model_path,
        "max_new_tokens": max_new_tokens,
        "splits": {split: len(pairs[split]) for split in (*SPLITS, "test")},
        "prompts": {split: counts[split]["prompts"] for split in SPLITS},
        "answer_equals_chosen": {
            split: counts[split]["prompts"] - counts[split]["pairs"] for split in SPLITS
        },
        "note": "test is empty on purpose: evaluate_preference pairs the held-out prompts itself",
    }
    return pairs, stats, answers
