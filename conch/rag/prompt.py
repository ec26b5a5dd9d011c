"""The answer prompt, shared by the chat endpoint and the eval rule so both measure the same thing.

Retrieved chunks are numbered [1]..[n] in a system message that asks the model to answer only from them and to
cite them; as many as fit the model's context (after the question and room for the answer) are included,
best first. When no chunk passes the similarity threshold the model is not asked at all: the answer is a
fixed "I don't know", so nothing is made up.
"""

from __future__ import annotations

import re

INSTRUCTIONS = (
    "Answer the question using only the numbered sources below, and cite each source you use "
    "as [1], [2], ... If the sources do not contain the answer, say that you do not know."
)
NO_ANSWER = {
    "en": "I don't know: nothing in the knowledge base matches this question closely enough to answer it.",
    "zh": "我不知道：知识库里没有与这个问题足够相关的内容。",
}
# Chat-template tokens around each message (role markers, end-of-turn) that the plain texts do not count.
TEMPLATE_OVERHEAD_TOKENS = 16
_CJK = re.compile(r"[\u3400-\u9fff]")
_CITATION = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")


class QuestionTooLong(ValueError):
    pass


def no_answer(question: str) -> str:
    return NO_ANSWER["zh" if _CJK.search(question) else "en"]


def source_label(hit: dict) -> str:
    heading = [h for h in hit["heading_path"] if h != hit["title"]]
    where = hit["source"] + (f", page {hit['page']}" if hit.get("page") else "")
    return " › ".join([hit["title"], *heading]) + f" ({where})"


def check_question(question: str, count_tokens, max_context_tokens: int | None, max_tokens: int) -> int:
    """Tokens the question takes; QuestionTooLong when it leaves no room for instructions and answer."""
    n = count_tokens(question)
    if max_context_tokens is None:
        return n
    room = max_context_tokens - max_tokens - count_tokens(INSTRUCTIONS) - 2 * TEMPLATE_OVERHEAD_TOKENS
    if n > room:
        raise QuestionTooLong(
            f"the question is {n} tokens, but the model's context of {max_context_tokens} tokens leaves room for "
            f"{max(room, 0)} after the instructions and {max_tokens} tokens for the answer; shorten the question "
            "or lower max_tokens"
        )
    return n


def build_messages(
    question: str, hits: list[dict], count_tokens, max_context_tokens: int | None, max_tokens: int
) -> tuple[list[dict], list[dict]]:
    """(messages, hits used): sources numbered in rank order, as many as the context holds."""
    n_question = check_question(question, count_tokens, max_context_tokens, max_tokens)
    budget = None
    if max_context_tokens is not None:
        budget = (
            max_context_tokens
            - max_tokens
            - n_question
            - count_tokens(INSTRUCTIONS)
            - 2 * TEMPLATE_OVERHEAD_TOKENS
        )
    sources, used = [], []
    for hit in hits:
        entry = f"[{len(used) + 1}] {source_label(hit)}\n{hit['text']}"
        cost = count_tokens(entry) + 2
        if budget is not None and cost > budget:
            break
        budget = None if budget is None else budget - cost
        sources.append(entry)
        used.append(hit)
    system = INSTRUCTIONS + "\n\nSources:\n\n" + "\n\n".join(sources)
    return [{"role": "system", "content": system}, {"role": "user", "content": question}], used


def cited_numbers(answer: str, n_sources: int) -> list[int]:
    """Source numbers the answer cites ([2], [1, 3], 【2】), in first-cited order, limited to 1..n_sources."""
    found = []
    for match in _CITATION.finditer(answer):
        for number in re.split(r"\s*[,，、]\s*", match.group(1)):
            if 1 <= int(number) <= n_sources and int(number) not in found:
                found.append(int(number))
    return found


def public_hit(hit: dict, number: int | None = None) -> dict:
    """A hit as the API returns it (scores, source metadata, text)."""
    keys = (
        "rank",
        "chunk_id",
        "score",
        "similarity",
        "vector_similarity",
        "keyword_similarity",
        "rerank_score",
        "source",
        "title",
        "heading_path",
        "page",
        "lang",
        "text",
    )
    out = {k: hit[k] for k in keys if k in hit}
    return out if number is None else {"index": number, **out}
