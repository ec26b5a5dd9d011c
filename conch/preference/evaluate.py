"""SFT vs DPO/KTO vs PPO on held-out data: preference accuracy, reward, and the SFT metrics, side by side.

- preference accuracy: the share of held-out pairs where the model's log-probability of `chosen` exceeds
  that of `rejected` (its margin favours chosen), with the mean margin in nats;
- reward: the reward model's mean score of the model's own greedy answers to the held-out pair prompts,
  and the reward model's accuracy (chosen scored above rejected) on those pairs;
- SFT metrics on the SFT test split, as rules/eval.smk computes them: answer loss, perplexity, ROUGE-L,
  BLEU-4 and persona-name use of greedy answers.
"""

from __future__ import annotations

import math
from statistics import mean

from conch import metrics as M
from conch.modeling import answer_loss, generate, load, prompt_messages, render
from conch.preference.scoring import answer_logprobs, pair_rewards, rendered_pairs


def reward_accuracy(reward_model, reward_tokenizer, pairs: list[dict]) -> dict:
    prompts, chosen, rejected = rendered_pairs(reward_tokenizer, pairs)
    good = pair_rewards(reward_model, reward_tokenizer, prompts, chosen)
    bad = pair_rewards(reward_model, reward_tokenizer, prompts, rejected)
    return {
        "accuracy": 100 * mean(g > b for g, b in zip(good, bad, strict=True)),
        "mean_chosen_reward": mean(good),
        "mean_rejected_reward": mean(bad),
        "pairs": len(pairs),
    }


def evaluate_model(
    path: str,
    pairs: list[dict],
    sft_records: list[dict],
    *,
    reward=None,
    max_new_tokens: int,
    batch_size: int,
    persona_names: list[str],
) -> tuple[dict, list[str]]:
    """(metrics, greedy answers to the pair prompts) of one model."""
    model, tokenizer = load(path)
    prompts, chosen, rejected = rendered_pairs(tokenizer, pairs)
    margins = [
        c - r
        for c, r in zip(
            answer_logprobs(model, tokenizer, prompts, chosen),
            answer_logprobs(model, tokenizer, prompts, rejected),
            strict=True,
        )
    ]
    answers = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    result = {
        "preference_accuracy": 100 * mean(m > 0 for m in margins),
        "mean_logp_margin": mean(margins),
    }
    if reward is not None:
        reward_model, reward_tokenizer = reward
        rm_prompts = rendered_pairs(reward_tokenizer, pairs)[0]
        result["mean_reward_of_answers"] = mean(
            pair_rewards(reward_model, reward_tokenizer, rm_prompts, answers)
        )
    if sft_records:
        contexts, references = zip(*(prompt_messages(r) for r in sft_records), strict=True)
        sft_prompts = [render(tokenizer, c) for c in contexts]
        loss, n_tokens = answer_loss(model, tokenizer, sft_prompts, list(references))
        outputs = generate(model, tokenizer, sft_prompts, max_new_tokens, batch_size)
        result.update(
            sft_loss=loss,
            sft_perplexity=math.exp(min(loss, 50)),
            **M.similarity(outputs, list(references)),
            **M.persona_scores(outputs, list(references), persona_names),
        )
    del model
    return result, answers
