"""SFT vs DPO/KTO vs PPO on held-out data: preference accuracy, reward, and the SFT metrics, side by side.

- preference accuracy: the share of held-out pairs where the model's log-probability of `chosen` exceeds
  that of `rejected` (its margin favours chosen), with the mean margin in nats;
- the same against the SFT model's own answers: each held-out prompt's chosen answer paired with the SFT
  model's greedy answer as rejected (where the two differ). The given pairs' rejected sides are answers the
  SFT model was never trained to give, so it prefers chosen on nearly all of them already and no aligned
  model can show a gain there; against what the SFT model itself says it starts near 0 %, and what DPO or
  PPO moved towards the preferred answers shows;
- reward: the reward model's mean score of the model's own greedy answers to the held-out pair prompts,
  and the reward model's accuracy (chosen scored above rejected) on those pairs;
- SFT metrics on the SFT test split, as rules/eval.smk computes them: answer loss, perplexity, ROUGE-L,
  BLEU-4 and persona-name use of greedy answers.
"""

from __future__ import annotations

import math
from statistics import mean

from conch.evaluation import scores as M
from conch.model.modeling import answer_loss, generate, load, prompt_messages, render
from conch.preference.on_policy import against_answers
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


def preference_scores(model, tokenizer, pairs: list[dict]) -> tuple[float | None, float | None]:
    """(% of pairs whose log-probability margin favours chosen, mean margin in nats); Nones for no pairs."""
    if not pairs:
        return None, None
    prompts, chosen, rejected = rendered_pairs(tokenizer, pairs)
    margins = [
        c - r
        for c, r in zip(
            answer_logprobs(model, tokenizer, prompts, chosen),
            answer_logprobs(model, tokenizer, prompts, rejected),
            strict=True,
        )
    ]
    return 100 * mean(m > 0 for m in margins), mean(margins)


def evaluate_model(
    path: str,
    pairs: list[dict],
    sft_records: list[dict],
    *,
    own_answer_pairs: list[dict] | None = None,
    reward=None,
    max_new_tokens: int,
    batch_size: int,
    persona_names: list[str],
) -> tuple[dict, list[str], list[dict]]:
    """(metrics, greedy answers to the pair prompts, the pairs against the SFT model's answers) of one model.

    The SFT model is evaluated first, without `own_answer_pairs`: they are built from its answers here, and
    every aligned model is then scored on those same pairs."""
    model, tokenizer = load(path)
    prompts = rendered_pairs(tokenizer, pairs)[0]
    answers = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    if own_answer_pairs is None:
        own_answer_pairs = against_answers(pairs, answers)
    accuracy, margin = preference_scores(model, tokenizer, pairs)
    own_accuracy, own_margin = preference_scores(model, tokenizer, own_answer_pairs)
    result = {
        "preference_accuracy": accuracy,
        "mean_logp_margin": margin,
        "preference_accuracy_vs_sft_answers": own_accuracy,
        "mean_logp_margin_vs_sft_answers": own_margin,
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
    return result, answers, own_answer_pairs
