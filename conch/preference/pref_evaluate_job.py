"""Rule evaluate_preference: SFT vs each aligned model on held-out pairs and the SFT test split
(conch/preference/held_out.py)."""

from __future__ import annotations

import json
from pathlib import Path

from conch.cluster import gpus
from conch.errors import JobFailed
from conch.jobs.files import as_paths, read_jsonl, write_tsv
from conch.preference.held_out import evaluate_model, reward_accuracy
from conch.preference.pref_report import chart, html_report
from conch.preference.reward import load_reward_model


def run(input, output, params, log, wildcards, resources, config):
    _gpus = gpus.assign_for(resources, config)  # held until the job ends; set before CUDA starts
    p = params
    pairs = read_jsonl(input.pairs)[: p.max_samples or None]
    sft_records = read_jsonl(input.sft_test)[: p.max_samples or None]
    if not pairs:
        raise JobFailed(f"evaluate_preference: {input.pairs} is empty; raise preference.data.test_fraction")
    aligned = as_paths(input.aligned)
    models = {"sft": input.sft_model, **dict(zip(p.methods, aligned, strict=True))}

    reward = load_reward_model(input.reward_model) if input.reward_model else None
    results, answers, own_answer_pairs = {}, {}, None
    for name, path in models.items():  # sft first: the pairs against its own answers are built from them
        results[name], answers[name], own_answer_pairs = evaluate_model(
            path,
            pairs,
            sft_records,
            own_answer_pairs=own_answer_pairs,
            reward=reward,
            max_new_tokens=p.max_new_tokens,
            batch_size=p.batch_size,
            persona_names=p.persona_names,
        )
    metrics = {
        "n_pairs": len(pairs),
        "n_pairs_vs_sft_answers": len(own_answer_pairs),
        "n_sft": len(sft_records),
        "max_new_tokens": p.max_new_tokens,
        "trained_on_pairs": p.pairs,
        "models": results,
    }
    if reward is not None:
        metrics["reward_model"] = {"path": input.reward_model, **reward_accuracy(*reward, pairs)}
    Path(output.metrics).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

    samples = [
        {
            "prompt": pair["messages"][-1]["content"],
            "chosen": pair["chosen"]["content"],
            "rejected": pair["rejected"]["content"],
            **{name: answers[name][i] for name in models},
        }
        for i, pair in enumerate(pairs)
    ]
    write_tsv(output.samples, samples)
    chart(metrics, output.chart)
    page = html_report(f"conch preference eval: {wildcards.experiment}", metrics, samples, [output.chart])
    Path(output.report).write_text(page, encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        for name, values in results.items():
            fh.write(f"{name}: {json.dumps(values, ensure_ascii=False)}\n")
        if reward is not None:
            fh.write(f"reward model: {json.dumps(metrics['reward_model'])}\n")
