"""BM25 keyword index over a sparse matrix (scipy), with jieba for Chinese.

Scoring a query sums the precomputed BM25 weights of its terms' columns: one sparse column slice, no Python
loop over chunks, which is what keeps 100,000 chunks inside the latency target.

`keyword_similarity` maps a BM25 score to [0, 1] on an absolute scale: the score divided by what a chunk of
average length holding every query term once would get (sum of the terms' idf), clipped to 1. Unlike
dividing by the best score of the query, a query whose words the knowledge base lacks stays near 0 and can
fall under the similarity threshold.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Function words carry no topic; with so few chunks their idf alone would not push them far enough down.
_EN_STOP = "a an and are as at be by can did do does for from has have how i in is it its me my of on or that the this to was were what when where which who whom why will with you your"
_ZH_STOP = "的 了 是 在 和 与 吗 呢 吧 啊 什么 怎么 如何 哪 哪里 哪个 为什么 谁 有 我 你 他 她 它 这 那 个 也 就 都 而 及"
STOPWORDS = frozenset(_EN_STOP.split()) | frozenset(_ZH_STOP.split())  # noqa: SIM905


def stem(word: str) -> str:
    """Plural and third-person -s only ("plays" ~ "play", "stories" ~ "story"): enough for questions to meet
    their answers without a stemmer's surprises on names."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes")):
        return word[:-2]
    return word[:-1]


def tokenize(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    terms = []
    pos = 0
    for match in _CJK_RUN.finditer(text):
        terms += [w.lower() for w in _WORD.findall(text[pos : match.start()])]
        terms += [w for w in jieba.cut_for_search(match.group()) if w.strip()]
        pos = match.end()
    terms += [w.lower() for w in _WORD.findall(text[pos:])]
    return [stem(t) for t in terms if t not in STOPWORDS]


class BM25:
    def __init__(
        self,
        weights: sparse.csc_matrix,
        vocab: dict[str, int],
        idf: np.ndarray,
        n_docs: int,
        k1: float,
        b: float,
    ):
        self.weights, self.vocab, self.idf, self.n_docs, self.k1, self.b = weights, vocab, idf, n_docs, k1, b

    @classmethod
    def build(cls, texts: list[str], k1: float = 1.2, b: float = 0.75) -> BM25:
        vocab: dict[str, int] = {}
        rows, cols, tfs, lengths = [], [], [], []
        for row, text in enumerate(texts):
            counts = Counter(tokenize(text))
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                rows.append(row)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        n = len(texts)
        tf = np.asarray(tfs, dtype=np.float32)
        col = np.asarray(cols, dtype=np.int64)
        df = np.bincount(col, minlength=len(vocab)).astype(np.float32)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        lengths = np.asarray(lengths, dtype=np.float32)
        norm = 1 - b + b * lengths / max(float(lengths.mean()) if n else 1.0, 1e-9)
        row = np.asarray(rows, dtype=np.int64)
        weight = idf[col] * tf * (k1 + 1) / (tf + k1 * norm[row])
        matrix = sparse.csc_matrix((weight, (row, col)), shape=(n, len(vocab)), dtype=np.float32)
        return cls(matrix, vocab, idf, n, k1, b)

    def query_terms(self, text: str) -> list[str]:
        return list(dict.fromkeys(tokenize(text)))

    def scores(self, terms: list[str]) -> np.ndarray:
        cols = [self.vocab[t] for t in terms if t in self.vocab]
        if not cols:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self.weights[:, cols].sum(axis=1)).ravel()

    def max_score(self, terms: list[str]) -> float:
        """Sum of idf over the query's terms; a term the index has never seen counts as the rarest (df = 0)."""
        unseen = math.log1p((self.n_docs + 0.5) / 0.5)
        return float(sum(self.idf[self.vocab[t]] if t in self.vocab else unseen for t in terms))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        sparse.save_npz(directory / "bm25_weights.npz", self.weights)
        np.save(directory / "bm25_idf.npy", self.idf)
        meta = {"n_docs": self.n_docs, "k1": self.k1, "b": self.b, "vocab": self.vocab}
        (directory / "bm25_vocab.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> BM25:
        directory = Path(directory)
        meta = json.loads((directory / "bm25_vocab.json").read_text(encoding="utf-8"))
        weights = sparse.load_npz(directory / "bm25_weights.npz").tocsc()
        return cls(
            weights, meta["vocab"], np.load(directory / "bm25_idf.npy"), meta["n_docs"], meta["k1"], meta["b"]
        )
