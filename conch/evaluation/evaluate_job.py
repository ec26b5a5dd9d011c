"""Rule evaluate: base vs merged model on the held-out test split (loss, perplexity, ROUGE-L, BLEU-4, persona-name
use) and, when eval.retention is set, retention of general ability on the general questions
(conch/evaluation/retention.py). With an R1-style template only the answer after the thinking is scored
(conch/model/reasoning.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from conch.cluster import gpus
from conch.errors import JobFailed
from conch.evaluation import retention as R
from conch.evaluation import scores as M
from conch.evaluation.report import comparison_chart, html_report
from conch.jobs.files import read_jsonl, write_tsv
from conch.jobs.progress import Progress
from conch.model.hub import base_model_path
from conch.model.modeling import answer_loss, generate, load, prompt_messages, render
from conch.model.reasoning import answers, markers, reasonings


def run(input, output, params, log, wildcards, resources, config):
    _gpus = gpus.assign_for(resources, config)  # held until the job ends; set before CUDA starts
    p = params
    records = read_jsonl(input.test)
    records = records[: p.max_samples] if p.max_samples else records
    if not records:
        raise JobFailed(f"evaluate: {input.test} is empty; raise data.test_fraction or add data")
    contexts, references = zip(*(prompt_messages(r) for r in records), strict=True)
    # The loss is on the whole reference (what training teaches, thinking included); the other metrics
    # compare answers with answers.
    reference_answers = answers(list(references), p.template)
    questions = R.load_questions(input.retention) if input.get("retention") else []
    # Loss and generation per test record, generation per retention question; for both models.
    progress = Progress(
        f"evaluate {wildcards.experiment}", total=2 * (2 * len(records) + len(questions)), unit="item"
    )
    results, outputs, retained, thoughts = {}, {}, {}, {}
    for name, path in (("base", base_model_path(input.base)), ("tuned", input.merged)):

        def step(n=1, phase="", name=name):
            progress.update(progress.done + n, note=f"{name}: {phase}")

        results[name], outputs[name], thoughts[name], retained[name] = evaluate_model(
            path, contexts, references, reference_answers, questions, p, step
        )
    progress.close()

    metrics = {"n_test": len(records), "max_new_tokens": p.max_new_tokens, **results}
    if markers(p.template):
        metrics["scored"] = f"answers after the {markers(p.template)[1]} of template {p.template}"
    if questions:
        base_sum, tuned_sum = (R.summary(questions, retained[m][1]) for m in ("base", "tuned"))
        metrics["retention"] = {
            "questions": len(questions),
            "file": input.retention,
            "max_new_tokens": p.retention_max_new_tokens,
            "kept": R.kept(base_sum, tuned_sum),
            "kept_answers": R.kept_answers(retained["base"][1], retained["tuned"][1]),
            "base": base_sum,
            "tuned": tuned_sum,
        }
        write_tsv(output.retention, R.answer_rows(questions, retained["base"], retained["tuned"]))
    else:
        Path(output.retention).write_text("retention evaluation off (eval.retention: null)\n")
    Path(output.metrics).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

    samples = [
        {"id": r["id"], "prompt": c[-1]["content"], "reference": ref, "base": b, "tuned": t}
        for r, c, ref, b, t in zip(
            records, contexts, reference_answers, outputs["base"], outputs["tuned"], strict=True
        )
    ]
    if thoughts["tuned"] is not None:  # R1-style: the thinking beside the answer that was scored
        for sample, base_thought, tuned_thought in zip(
            samples, thoughts["base"], thoughts["tuned"], strict=True
        ):
            sample.update(base_reasoning=base_thought, tuned_reasoning=tuned_thought)
    write_tsv(output.samples, samples)

    comparison_chart(metrics, output.chart)
    # LLaMA-Factory plots validation loss only when the experiment evaluates during training.
    eval_loss_plot = Path(input.loss_plot).with_name("training_eval_loss.png")
    images = [input.loss_plot, *([eval_loss_plot] if eval_loss_plot.exists() else []), output.chart]
    page = html_report(f"conch eval: {wildcards.experiment}", metrics, samples, images)
    Path(output.report).write_text(page, encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        for name in ("base", "tuned"):
            fh.write(f"{name}: {json.dumps(results[name], ensure_ascii=False)}\n")
        if questions:
            fh.write(f"retention kept: {metrics['retention']['kept']}\n")


def evaluate_model(path, contexts, references, reference_answers, questions, p, step):
    """(metrics, scored test answers, thinking or None, (retention answers, correct flags) or None) of one
    model; `step(n, phase)` counts progress."""
    model, tokenizer = load(path)
    prompts = [render(tokenizer, c) for c in contexts]
    loss, n_tokens = answer_loss(model, tokenizer, prompts, list(references), on_item=lambda: step(1, "loss"))
    generated = generate(model, tokenizer, prompts, p.max_new_tokens, p.batch_size, lambda n: step(n, "test"))
    scored = answers(generated, p.template)
    result = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50)),
        "answer_tokens": n_tokens,
        **M.similarity(scored, reference_answers),
        **M.persona_scores(scored, reference_answers, p.persona_names),
    }
    thinking = reasonings(generated, p.template)
    if not questions:
        return result, scored, thinking, None
    asked = [render(tokenizer, [{"role": "user", "content": q["question"]}]) for q in questions]
    said = answers(
        generate(
            model, tokenizer, asked, p.retention_max_new_tokens, p.batch_size, lambda n: step(n, "retention")
        ),
        p.template,
    )
    correct = R.score(questions, said)
    result["retention"] = R.summary(questions, correct)["score"]
    return result, scored, thinking, (said, correct)
