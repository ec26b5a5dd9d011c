"""Rule rag_eval: retrieval metrics on the question set, and answers with citations from the merged model,
offline."""

from __future__ import annotations

import json
from pathlib import Path

from conch.jobs.files import write_jsonl
from conch.jobs.progress import Progress
from conch.model.hub import base_model_path
from conch.model.modeling import generate, load, render
from conch.rag.prompt import build_messages, cited_numbers, no_answer
from conch.rag.rag_eval import load_questions, report_markdown, retrieval_metrics, score_question
from conch.rag.retrieve import Retriever


def run(input, output, params, log, wildcards):
    p = params
    retriever = Retriever(input.index)
    k = retriever.settings["top_k"]
    rows, hits_by_id = [], {}
    for q in load_questions(input.questions):
        hits = retriever.search(q["question"])
        hits_by_id[q["id"]] = hits
        rows.append(score_question(q, hits))
    metrics = {
        **retrieval_metrics(rows, k),
        "settings": retriever.settings,
        "embedding_model": retriever.index.meta["embedding_model"],
        "n_chunks": retriever.index.meta["n_chunks"],
    }

    # Answers: a few answerable questions per language, so both the English and the Chinese prompt are
    # exercised.
    answerable = [r for r in rows if r["answerable"]]
    langs = sorted({r["lang"] for r in answerable})
    per_lang = max(1, p.answer_questions // max(1, len(langs)))
    picked = [r for lang in langs for r in [r for r in answerable if r["lang"] == lang][:per_lang]]
    picked = picked[: p.answer_questions]

    progress = Progress(f"rag_eval {wildcards.experiment}", total=2 * len(picked), unit="answer")
    # The served (merged) model, and the base model given the same sources for comparison.
    answered, metrics["answers"] = answer_all(input.merged, picked, hits_by_id, p.max_new_tokens, progress)
    base_answered, metrics["answers_base"] = answer_all(
        base_model_path(input.base), picked, hits_by_id, p.max_new_tokens, progress
    )
    progress.close()
    for row, (answer, cited), (base_answer, _) in zip(picked, answered, base_answered, strict=True):
        row.update(answer=answer, cited=cited, base_answer=base_answer)

    Path(output.metrics).write_text(
        json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_jsonl(output.results, rows)
    title = f"conch RAG eval: {wildcards.experiment}"
    Path(output.report).write_text(report_markdown(title, metrics, rows), encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(
            f"recall@{k} {metrics['recall_at_k']}, MRR {metrics['mrr']}, no_answer {metrics['no_answer']}, "
            f"citation rate {metrics['answers']['citation_rate']} over {len(picked)} answer(s) "
            f"(base model: {metrics['answers_base']['citation_rate']})\n"
        )


def answer_all(model_path: str, picked, hits_by_id, max_new_tokens, progress) -> tuple[list, dict]:
    """The model's answers to the picked questions from their retrieved sources, and how many cite one."""
    model, tokenizer = load(model_path)
    context = getattr(model.config, "max_position_embeddings", None)

    def count_tokens(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompts, used_sources = [], []
    for row in picked:
        messages, used = build_messages(
            row["question"], hits_by_id[row["id"]], count_tokens, context, max_new_tokens
        )
        used_sources.append(used)
        prompts.append(render(tokenizer, messages))
    texts = generate(
        model, tokenizer, prompts, max_new_tokens, on_batch=lambda n: progress.update(progress.done + n)
    )
    answers = [
        text if used else no_answer(row["question"])
        for row, text, used in zip(picked, texts, used_sources, strict=True)
    ]
    cited = [
        cited_numbers(text, len(used)) if used else [] for text, used in zip(texts, used_sources, strict=True)
    ]
    summary = {
        "generated": len(picked),
        "with_citation": sum(bool(c) for c in cited),
        "citation_rate": round(sum(bool(c) for c in cited) / len(picked), 4) if picked else None,
        "model": model_path,
        "max_new_tokens": max_new_tokens,
    }
    return list(zip(answers, cited, strict=True)), summary
