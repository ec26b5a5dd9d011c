"""Text-similarity and task metrics for the eval report.

Tokenised with jieba, as LLaMA-Factory's own ComputeSimilarity does, so Chinese is split into words rather
than scored as one long token; English words pass through jieba intact. Scores are percentages.
"""

from __future__ import annotations

import logging
from statistics import mean

import jieba
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

jieba.setLogLevel(logging.WARNING)


def tokens(text: str) -> list[str]:
    return [t for t in jieba.lcut(text.lower()) if t.strip()]


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (LCS-based), 0..100."""
    p, r = tokens(prediction), tokens(reference)
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 100 * 2 * precision * recall / (precision + recall)


def bleu4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 with smoothing method 3 (as LLaMA-Factory reports it), 0..100."""
    p, r = tokens(prediction), tokens(reference)
    if not p or not r:
        return 0.0
    return 100 * sentence_bleu([r], p, smoothing_function=SmoothingFunction().method3)


def mentions(text: str, names: list[str]) -> bool:
    low = text.lower()
    return any(name.lower() in low for name in names)


def persona_scores(predictions: list[str], references: list[str], names: list[str]) -> dict:
    """Share of answers naming the persona where the reference does (recall), and where it does not (false use)."""
    named = [mentions(p, names) for p, r in zip(predictions, references, strict=True) if mentions(r, names)]
    unnamed = [
        mentions(p, names) for p, r in zip(predictions, references, strict=True) if not mentions(r, names)
    ]
    return {
        "persona_name_recall": 100 * mean(named) if named else None,
        "persona_name_false_use": 100 * mean(unnamed) if unnamed else None,
        "persona_references": len(named),
    }


def similarity(predictions: list[str], references: list[str]) -> dict:
    pairs = list(zip(predictions, references, strict=True))
    return {
        "rouge_l": mean(rouge_l(p, r) for p, r in pairs) if pairs else 0.0,
        "bleu_4": mean(bleu4(p, r) for p, r in pairs) if pairs else 0.0,
        "exact_match": 100 * mean(p.strip() == r.strip() for p, r in pairs) if pairs else 0.0,
    }
