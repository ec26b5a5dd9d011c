"""Retrieval metrics on the question set, and answers with citations from the merged model, offline."""

import json
from pathlib import Path

from conch.modeling import generate, load, render
from conch.progress import Progress
from conch.rag.evaluate import load_questions, report_markdown, retrieval_metrics, score_question
from conch.rag.index import write_jsonl
from conch.rag.prompt import build_messages, cited_numbers, no_answer
from conch.rag.retrieve import Retriever

p = snakemake.params
retriever = Retriever(snakemake.input.index)
k = retriever.settings["top_k"]
questions = load_questions(snakemake.input.questions)
rows, hits_by_id = [], {}
for q in questions:
    hits = retriever.search(q["question"])
    hits_by_id[q["id"]] = hits
    rows.append(score_question(q, hits))
metrics = {
    **retrieval_metrics(rows, k),
    "settings": retriever.settings,
    "embedding_model": retriever.index.meta["embedding_model"],
    "n_chunks": retriever.index.meta["n_chunks"],
}

# Answers: a few answerable questions per language, so both the English and the Chinese prompt are exercised.
answerable = [r for r in rows if r["answerable"]]
langs = sorted({r["lang"] for r in answerable})
per_lang = max(1, p.answer_questions // max(1, len(langs)))
picked = [r for lang in langs for r in [r for r in answerable if r["lang"] == lang][:per_lang]]
picked = picked[: p.answer_questions]

model, tokenizer = load(snakemake.input.merged)
context = getattr(model.config, "max_position_embeddings", None)


def count_tokens(text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


prompts, used_by_id = [], {}
for row in picked:
    messages, used = build_messages(
        row["question"], hits_by_id[row["id"]], count_tokens, context, p.max_new_tokens
    )
    used_by_id[row["id"]] = used
    prompts.append(render(tokenizer, messages))
progress = Progress(f"rag_eval {snakemake.wildcards.experiment}", total=len(prompts), unit="answer")
outputs = generate(
    model, tokenizer, prompts, p.max_new_tokens, on_batch=lambda n: progress.update(progress.done + n)
)
progress.close()
cited = 0
for row, text in zip(picked, outputs, strict=True):
    used = used_by_id[row["id"]]
    row["answer"] = text if used else no_answer(row["question"])
    row["cited"] = cited_numbers(text, len(used)) if used else []
    cited += bool(row["cited"])
metrics["answers"] = {
    "generated": len(picked),
    "with_citation": cited,
    "citation_rate": round(cited / len(picked), 4) if picked else None,
    "model": snakemake.input.merged,
    "max_new_tokens": p.max_new_tokens,
}

Path(snakemake.output.metrics).write_text(
    json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
)
write_jsonl(snakemake.output.results, rows)
title = f"conch RAG eval: {snakemake.wildcards.experiment}"
Path(snakemake.output.report).write_text(report_markdown(title, metrics, rows), encoding="utf-8")
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(
        f"recall@{k} {metrics['recall_at_k']}, MRR {metrics['mrr']}, no_answer {metrics['no_answer']}, "
        f"citation rate {metrics['answers']['citation_rate']} over {len(picked)} answer(s)\n"
    )
