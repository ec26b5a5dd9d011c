"""Retention: does the fine-tuned model still answer general questions the base model could answer?

A question line: {"id", "lang", "category", "question", "answers": [accepted short references]}. Both the base
and the tuned model answer every question greedily; an answer scores 1 when, after normalisation, it contains
one of the references:

- normalisation: Unicode NFKC (full-width letters and digits become ASCII), lower case, punctuation to spaces,
  runs of spaces to one;
- a reference made of letters or digits must match as whole words ("6" is not found in "16", "cat" not in
  "chat"); a Chinese reference is found anywhere (Chinese has no spaces between words);
- a reference may not occur in its own question (checked when the file is read), so repeating the question
  never scores, and no reference is "yes" or "no" (a persona that answers "No." to everything must not score).

The score is the share of questions answered. `kept` is tuned / base, the share of the base model's score the
fine-tuned model keeps; `kept_answers` is stricter, the share of the questions the base model answered that the
tuned model still answers (gains elsewhere, e.g. in Chinese, cannot hide a loss).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from pathlib import Path

from conch.jobs.files import question_lines

CATEGORIES = ("facts", "arithmetic", "translation", "instructions")
FORBIDDEN_REFERENCES = {"yes", "no", "是", "否", "不"}
_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")
_WORDY = re.compile(r"^[a-z0-9 ]+$")


_DECIMAL = re.compile(r"(?<=\d)(\.(?=\d)|,(?=\d{3}(?!\d)))")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    # 18.0 and 1,000 stay one number: "0" must not be found in "-18.0".
    text = _DECIMAL.sub(lambda m: "p" if m.group() == "." else "", text)
    return _SPACES.sub(" ", _PUNCT.sub(" ", text)).strip()


def contains(answer: str, reference: str) -> bool:
    """Whether the normalised answer holds the normalised reference (whole words for Latin references)."""
    answer, reference = normalize(answer), normalize(reference)
    if not reference:
        return False
    if _WORDY.match(reference):
        return re.search(rf"(?<![a-z0-9]){re.escape(reference)}(?![a-z0-9])", answer) is not None
    return reference in answer


_STOPWORDS = frozenset(
    "the a an of in on to and or is are was what which who how many much does do you your for from with "  # noqa: SIM905
    "into that this word words name give there have has one".split()
)
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")


def topic_terms(text: str) -> set[str]:
    """Content words (English) and character pairs (Chinese) of a text, to tell whether two texts share a topic."""
    norm = normalize(text)
    words = {w for w in norm.split() if len(w) > 2 and w not in _STOPWORDS and not _CJK_RUN.search(w)}
    pairs = {run[i : i + 2] for run in _CJK_RUN.findall(norm) for i in range(len(run) - 1)}
    return words | pairs


def leaks(question: dict, prompt: str, answer: str) -> bool:
    """Whether a training record would teach a retention question: it asks the same thing, or it shares the
    question's topic (two content terms) and holds one of its references."""
    if normalize(question["question"]) in normalize(prompt):
        return True
    shared = topic_terms(question["question"]) & topic_terms(prompt + " " + answer)
    return len(shared) >= 2 and any(contains(prompt + " " + answer, ref) for ref in question["answers"])


def load_questions(path: str | Path) -> list[dict]:
    questions, seen = [], set()
    for where, number, q in question_lines(path):
        answers = q.get("answers")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError(f"{where}: 'answers' must be a non-empty list of strings")
        if q.get("category") not in CATEGORIES:
            raise ValueError(f"{where}: 'category' must be one of {', '.join(CATEGORIES)}")
        for reference in answers:
            if normalize(reference) in FORBIDDEN_REFERENCES:
                raise ValueError(f"{where}: reference {reference!r} would be matched by any yes/no answer")
            if contains(q["question"], reference):
                raise ValueError(f"{where}: reference {reference!r} occurs in the question itself")
        key = normalize(q["question"])
        if key in seen:
            raise ValueError(f"{where}: the same question twice")
        seen.add(key)
        questions.append({"id": q.get("id", f"line-{number}"), "lang": q.get("lang", "und"), **q})
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


def score(questions: list[dict], answers: list[str]) -> list[bool]:
    return [
        any(contains(answer, ref) for ref in q["answers"])
        for q, answer in zip(questions, answers, strict=True)
    ]


def summary(questions: list[dict], correct: list[bool]) -> dict:
    """Percent correct overall, by language and by category."""

    def share(flags):
        return round(100 * sum(flags) / len(flags), 1) if flags else None

    groups = defaultdict(list)
    for q, ok in zip(questions, correct, strict=True):
        groups[("lang", q["lang"])].append(ok)
        groups[("category", q["category"])].append(ok)
    return {
        "score": share(correct),
        "correct": sum(correct),
        "questions": len(correct),
        "by_lang": {k: share(v) for (kind, k), v in sorted(groups.items()) if kind == "lang"},
        "by_category": {k: share(v) for (kind, k), v in sorted(groups.items()) if kind == "category"},
    }


def kept(base: dict, tuned: dict) -> float | None:
    """Share of the base model's retention score the tuned model keeps (None when the base scores 0)."""
    return round(tuned["score"] / base["score"], 3) if base["score"] else None


def kept_answers(base_correct: list[bool], tuned_correct: list[bool]) -> float | None:
    """Share of the questions the base model answered that the tuned model still answers."""
    known = [tuned for base, tuned in zip(base_correct, tuned_correct, strict=True) if base]
    return round(sum(known) / len(known), 3) if known else None


def answer_rows(questions: list[dict], base: tuple, tuned: tuple) -> list[dict]:
    """One row per retention question: its references, and each model's answer and whether it was right;
    `base` and `tuned` are (answers, correct flags)."""
    return [
        {
            "id": q["id"],
            "question": q["question"],
            "references": " | ".join(q["answers"]),
            "base": b,
            "base_correct": int(bc),
            "tuned": t,
            "tuned_correct": int(tc),
        }
        for q, b, bc, t, tc in zip(questions, *base, *tuned, strict=True)
    ]
