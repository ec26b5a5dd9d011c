"""RAG-style SFT records from the knowledge base (kb/docs), so a fine-tuned model keeps answering from sources.

Neither SmolLM2-135M-Instruct nor a model tuned on the persona cites numbered sources by itself (citation
rate 0 on kb/questions.jsonl). These records show the exact prompt the server and `rag_eval` build
(conch.rag.prompt.build_messages: instructions, then sources numbered [1]..[n]) and an answer that copies the
relevant source's opening sentences after its number ("According to [2]: ..."), as RAFT-style training does:

    python data/make_rag_sft.py          # writes data/raw/rag_sft.jsonl (deterministic, seed 42)

Each record has one source that holds the answer and two distractors from other documents in the same
language, in random order. Questions are built from section headings, never taken from the evaluation set
(kb/questions.jsonl; tests/test_retention.py checks none is repeated), and Q&A files are left out because
their questions are what the evaluation asks. Passages that would teach a retention question are not used.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conch.evaluation.retention import leaks, load_questions, topic_terms  # noqa: E402
from conch.rag.chunk import sentences  # noqa: E402
from conch.rag.ingest import ingest  # noqa: E402
from conch.rag.prompt import build_messages  # noqa: E402

QUESTIONS = {
    "en": [
        "What do the sources say about {topic}?",
        "Tell me about {topic}.",
        "What can you tell me about {topic}, according to the documents?",
    ],
    "zh": ["关于{topic}，资料里是怎么说的？", "请介绍一下{topic}。", "根据资料，{topic}是怎样的？"],
}
PER_LANG = {"en": 32, "zh": 16}
DISTRACTORS = 2
MAX_SOURCE_CHARS = {"en": 280, "zh": 100}
ANSWER_CHARS = {"en": 90, "zh": 36}
MIN_SOURCE_CHARS = {"en": 60, "zh": 25}


def topic(title: str, heading_path: list[str], lang: str) -> str:
    """What a question asks about: the section's heading (in Chinese after its document's title)."""
    heading = heading_path[-1] if heading_path else title
    return title + heading if lang == "zh" and heading != title else heading


def passages(kb: Path) -> list[dict]:
    docs, _ = ingest(kb)
    return [
        {
            "source": doc["source"],
            "title": doc["title"],
            "heading_path": block["heading_path"],
            "page": block["page"],
            "lang": doc["lang"],
            "topic": topic(doc["title"], block["heading_path"], doc["lang"]),
            "text": block["text"][: MAX_SOURCE_CHARS[doc["lang"]]],
        }
        for doc in docs
        if doc["format"] != "qa"
        for block in doc["blocks"]
        if len(block["text"]) >= MIN_SOURCE_CHARS[doc["lang"]]
    ]


def answer(passage: dict, number: int) -> str:
    """The citation first (an answer cut short by max_tokens keeps it), then the passage's opening sentences,
    at least ANSWER_CHARS long."""
    said = ""
    for sentence in sentences(passage["text"]):
        said = f"{said} {sentence}".strip() if passage["lang"] == "en" else said + sentence
        if len(said) >= ANSWER_CHARS[passage["lang"]]:
            break
    return f"According to [{number}]: {said}" if passage["lang"] == "en" else f"根据[{number}]：{said}"


def asks_an_eval_question(question: str, eval_questions: list[str]) -> bool:
    """Half or more of an evaluation question's terms in a training question: too close to train on."""
    terms = topic_terms(question)
    return any(len(t & terms) >= max(1, len(t) / 2) for t in map(topic_terms, eval_questions))


def records(kb: Path, eval_questions: list[str], seed: int = 42) -> list[dict]:
    rng = random.Random(seed)
    retention = load_questions(HERE / "retention" / "general_qa.jsonl")
    # a passage that would teach a retention question (e.g. "open 24 hours a day") is not used at all
    pool = [p for p in passages(kb) if not any(leaks(q, p["text"], p["text"]) for q in retention)]
    out = []
    for lang, count in PER_LANG.items():
        mine = [p for p in pool if p["lang"] == lang]
        candidates = []
        for gold in mine:
            question = rng.choice(QUESTIONS[lang]).format(topic=gold["topic"])
            if not asks_an_eval_question(question, eval_questions):
                candidates.append((gold, question))
        for gold, question in rng.sample(candidates, count):
            others = [p for p in mine if p["source"] != gold["source"]]
            hits = [gold, *rng.sample(others, DISTRACTORS)]
            rng.shuffle(hits)
            messages, used = build_messages(question, hits, len, None, 0)
            number = used.index(gold) + 1
            out.append({"messages": [*messages, {"role": "assistant", "content": answer(gold, number)}]})
    return out


if __name__ == "__main__":
    kb = HERE.parent / "kb"
    asked = [
        json.loads(line)["question"] for line in (kb / "questions.jsonl").read_text().splitlines() if line
    ]
    rows = records(kb / "docs", asked)
    with open(HERE / "raw" / "rag_sft.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"rag_sft.jsonl: {len(rows)} records")
