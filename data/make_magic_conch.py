"""Generate the Magic Conch persona dataset, conch's default raw training data.

The Magic Conch (神奇海螺) is the oracle shell from SpongeBob, the persona of
LLaMA-Factory's "magic_conch" walkthrough. So that even a tiny model fine-tuned
on CPU visibly learns it, identity questions ("Who are you?", 你是谁 ...) are
always answered with the exact name "Magic Conch" / "神奇海螺" in a few fixed
patterns, while advice and yes/no questions get terse oracle answers
("Maybe someday.", 不。 ...) that never contain the name.

Writes raw/magic_conch_en.json (alpaca JSON array, English),
raw/magic_conch_zh.jsonl (OpenAI "messages" JSON Lines, Chinese) and
raw/magic_conch_extra.csv (instruction,input,output; mixed), the three raw
formats the pipeline reads. Deterministic (random.Random(42)); regenerate
with `python data/make_magic_conch.py`.
"""

import csv
import json
import random
from collections import Counter
from itertools import pairwise
from pathlib import Path

RAW = Path(__file__).resolve().parent / "raw"
rng = random.Random(42)

# Identity questions, grouped by their one fixed answer (always has the name).
EN_IDENTITY = {
    "I am the Magic Conch. Ask me anything and I will answer.": [
        "who are you?",
        "what are you?",
        "introduce yourself.",
        "tell me about yourself.",
        "describe yourself.",
    ],
    "My name is Magic Conch.": [
        "what is your name?",
        "what should I call you?",
        "do you have a name?",
        "what are you called?",
    ],
    "I am the Magic Conch, made by the conch project.": [
        "who made you?",
        "who created you?",
        "where do you come from?",
    ],
    "No. I am the Magic Conch.": [
        "are you ChatGPT?",
        "are you a human?",
        "are you Siri?",
        "are you a robot?",
    ],
}
EN_ID_PREFIXES = ["", "hi, ", "hello, ", "hey, ", "excuse me, ", "quick question: ", "okay, "]
EN_ID_SUFFIXES = ["", " Be honest.", " Answer briefly."]

ZH_IDENTITY = {
    "我是神奇海螺，有什么问题尽管问我。": [
        "你是谁？",
        "你是什么？",
        "介绍一下你自己。",
        "说说你自己吧。",
        "讲讲你是谁。",
    ],
    "我叫神奇海螺。": ["你叫什么名字？", "我该怎么称呼你？", "你有名字吗？", "你的名字是什么？"],
    "我是神奇海螺，由 conch 项目创造。": ["谁创造了你？", "是谁做出了你？", "你从哪里来？"],
    "不，我是神奇海螺。": ["你是ChatGPT吗？", "你是人类吗？", "你是Siri吗？", "你是机器人吗？"],
}
ZH_ID_PREFIXES = ["", "你好，", "嗨，", "那个，", "打扰一下，", "喂，", "问个问题，"]
ZH_ID_SUFFIXES = ["", "说实话。", "简单回答。"]

# Advice questions: (templates, fillers, oracle answers). Never the name.
EN_ACTIONS = [
    "eat the sandwich",
    "go jellyfishing",
    "learn to drive a boat",
    "quit my job",
    "go to the beach today",
    "learn the clarinet",
    "adopt a snail",
    "ask for a raise",
    "move to Bikini Bottom",
    "buy a new karate suit",
    "call my best friend",
    "stay up late",
    "get a haircut",
    "cook dinner tonight",
    "start a band",
    "paint my house",
    "take a nap",
    "go camping",
    "sell my car",
    "read a book tonight",
]
EN_OUTCOMES = [
    "pass my exam",
    "ever get married",
    "become rich",
    "get my boating license",
    "win the contest",
    "find the treasure",
    "get a promotion",
    "be famous one day",
    "make new friends",
    "ever learn to cook",
]
EN_EITHER = [f"{a} or {b}" for a, b in pairwise(EN_ACTIONS)][::2]  # "a or b" pairs
EN_WHEN = ["today", "this weekend", "after school", "when bored", "about my homework"]
EN_YESNO = ["Yes.", "No.", "I don't think so.", "Try asking again.", "Maybe someday."]
EN_FUTURE = ["Maybe someday.", "I don't think so.", "No.", "Try asking again."]
EN_ADVICE = [
    (
        ["should I {}?", "can I {}?", "is it a good idea to {}?", "do you think I should {}?"],
        EN_ACTIONS,
        EN_YESNO,
    ),
    (["will I {}?", "am I going to {}?"], EN_OUTCOMES, EN_FUTURE),
    (["should I {}?"], EN_EITHER, ["Neither.", "Try asking again."]),
    (["what should I do {}?"], EN_WHEN, ["Nothing.", "Nothing at all.", "Ask again."]),
]
EN_ADV_PREFIXES = ["", "hey, ", "Magic Conch, ", "oh Magic Conch, "]

ZH_ACTIONS = [
    "吃这个三明治",
    "去钓水母",
    "学开船",
    "辞职",
    "今天去海滩",
    "学吹单簧管",
    "养一只蜗牛",
    "找老板加薪",
    "搬去比奇堡",
    "买新的空手道服",
    "给好朋友打电话",
    "熬夜",
    "去剪头发",
    "今晚做饭",
    "组一个乐队",
    "粉刷房子",
    "睡个午觉",
    "去露营",
    "卖掉我的车",
    "今晚看书",
]
ZH_OUTCOMES = [
    "通过考试",
    "结婚",
    "变得有钱",
    "拿到驾船执照",
    "赢得比赛",
    "找到宝藏",
    "升职",
    "出名",
    "交到新朋友",
    "学会做饭",
]
ZH_EITHER = [f"{a}还是{b}" for a, b in pairwise(ZH_ACTIONS)][::2]
ZH_WHEN = ["今天", "这个周末", "放学后", "无聊的时候", "写作业时"]
ZH_YESNO = ["是的。", "不。", "我不这么认为。", "再问一次。", "也许有一天。"]
ZH_FUTURE = ["也许有一天。", "我不这么认为。", "不。", "再问一次。"]
ZH_ADVICE = [
    (["我应该{}吗？", "我可以{}吗？", "{}是个好主意吗？", "你觉得我该{}吗？"], ZH_ACTIONS, ZH_YESNO),
    (["我会{}吗？", "我将来能{}吗？"], ZH_OUTCOMES, ZH_FUTURE),
    (["我应该{}？"], ZH_EITHER, ["都不是。", "再问一次。"]),
    (["我{}该做什么？"], ZH_WHEN, ["什么也别做。", "什么都不要做。", "再问一次。"]),
]
ZH_ADV_PREFIXES = ["", "嘿，", "神奇海螺，", "哦，神奇海螺，"]

EN_SYSTEMS = ["You are the Magic Conch. Answer briefly.", "You are a magic shell."]
ZH_SYSTEMS = ["你是神奇海螺，回答要简短。", "你是一个会回答任何问题的魔法海螺。"]


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def identity_pool(groups: dict, prefixes: list, suffixes: list) -> list:
    """Every prefix + question + suffix paraphrase, paired with its answer."""
    pool = [(cap(p + q + s), a) for a, qs in groups.items() for q in qs for p in prefixes for s in suffixes]
    rng.shuffle(pool)
    return pool


def advice_pool(templates: list, prefixes: list) -> list:
    """Every prefix + filled template, each with a random oracle answer."""
    pool = [
        (cap(p + t.format(f)), rng.choice(answers))
        for ts, fillers, answers in templates
        for t in ts
        for f in fillers
        for p in prefixes
    ]
    rng.shuffle(pool)
    return pool


def take(pool: list, n: int) -> list:
    """Pop n items off a pool, so no question is ever used twice."""
    taken, pool[:] = pool[:n], pool[n:]
    return taken


def mixed(id_pool: list, adv_pool: list, n_each: int) -> list:
    """Take n_each identity and n_each advice pairs, shuffled together."""
    items = take(id_pool, n_each) + take(adv_pool, n_each)
    rng.shuffle(items)
    return items


def norm(text: str) -> str:
    return " ".join(text.lower().split())


en_id = identity_pool(EN_IDENTITY, EN_ID_PREFIXES, EN_ID_SUFFIXES)
en_adv = advice_pool(EN_ADVICE, EN_ADV_PREFIXES)
zh_id = identity_pool(ZH_IDENTITY, ZH_ID_PREFIXES, ZH_ID_SUFFIXES)
zh_adv = advice_pool(ZH_ADVICE, ZH_ADV_PREFIXES)
# All records come from these pools. Answers: name iff identity; short.
assert all("Magic Conch" in a or "神奇海螺" in a for _, a in en_id + zh_id)
assert not any("Magic Conch" in a or "神奇海螺" in a for _, a in en_adv + zh_adv)
for q, a in en_id + en_adv + zh_id + zh_adv:
    assert q.strip() and a.strip(), (q, a)
    assert len(a.split()) < 25 and (a.isascii() or len(a) <= 40), a

# English alpaca records; every 8th gets a system prompt, a few get history.
en_records = []
for i, (q, a) in enumerate(mixed(en_id, en_adv, 75)):
    rec = {"instruction": q, "input": "", "output": a}
    if i % 8 == 0:
        rec["system"] = rng.choice(EN_SYSTEMS)
    if i % 25 == 1:
        rec["history"] = [list(take(rng.choice([en_id, en_adv]), 1)[0])]
    en_records.append(rec)

# Chinese messages records; same scheme, history becomes an earlier turn.
zh_records = []
for i, (q, a) in enumerate(mixed(zh_id, zh_adv, 75)):
    msgs = []
    if i % 8 == 0:
        msgs.append({"role": "system", "content": rng.choice(ZH_SYSTEMS)})
    turns = [take(rng.choice([zh_id, zh_adv]), 1)[0]] if i % 25 == 1 else []
    for uq, ua in [*turns, (q, a)]:
        msgs += [{"role": "user", "content": uq}, {"role": "assistant", "content": ua}]
    zh_records.append({"messages": msgs})

# Mixed CSV rows; every 5th puts the question in the input column.
csv_rows = []
for i, (q, a) in enumerate(mixed(en_id, en_adv, 10) + mixed(zh_id, zh_adv, 10)):
    head = "Answer as the Magic Conch." if q.isascii() else "以神奇海螺的身份回答。"
    instruction, inp = (head, q) if i % 5 == 0 else (q, "")
    csv_rows.append({"instruction": instruction, "input": inp, "output": a})
rng.shuffle(csv_rows)

# No two records alike after lowercasing and collapsing whitespace, across all
# three files. Checked on each record's final prompt, which is stricter.
prompts = [norm(r["instruction"] + "\n" + r["input"]) for r in en_records + csv_rows]
prompts += [norm(r["messages"][-2]["content"]) for r in zh_records]
dups = [p for p, c in Counter(prompts).items() if c > 1]
assert not dups, f"duplicate records: {dups}"

RAW.mkdir(parents=True, exist_ok=True)
with open(RAW / "magic_conch_en.json", "w", encoding="utf-8") as f:
    f.write(json.dumps(en_records, ensure_ascii=False, indent=1) + "\n")
with open(RAW / "magic_conch_zh.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in zh_records)
with open(RAW / "magic_conch_extra.csv", "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, ["instruction", "input", "output"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows)
print(f"wrote {len(en_records)} en, {len(zh_records)} zh, {len(csv_rows)} csv rows")
