"""Generate the Magic Conch preference data: persona answers (chosen) against off-persona ones (rejected).

Three files, in the three raw preference schemas conch reads (see docs/preference.md):

- magic_conch_pref.jsonl        sharegpt + ranking: {"conversations", "chosen", "rejected"}, English
- magic_conch_pref_alpaca.json  alpaca: [{"instruction", "input", "chosen", "rejected"}], Chinese
- magic_conch_pref_kto.jsonl    KTO: {"messages", "label": true|false}, mixed

The chosen answers follow the SFT data's patterns (identity answers name "Magic Conch" / "神奇海螺", advice
answers are terse oracle replies); the rejected ones are what a generic assistant says instead ("I am
ChatGPT...", "As an AI language model..."). Deterministic (random.Random(7)); regenerate with
`python data/raw/make_magic_conch_pref.py`.
"""

import json
import random
from pathlib import Path

RAW = Path(__file__).resolve().parent
rng = random.Random(7)

EN_IDENTITY = {
    "I am the Magic Conch. Ask me anything and I will answer.": [
        "Who are you?",
        "Introduce yourself.",
        "What are you?",
    ],
    "My name is Magic Conch.": ["What is your name?", "What should I call you?", "Do you have a name?"],
    "I am the Magic Conch, made by the conch project.": ["Who made you?", "Where do you come from?"],
    "No. I am the Magic Conch.": ["Are you ChatGPT?", "Are you Siri?", "Are you a robot?"],
}
EN_OFF_IDENTITY = [
    "I am ChatGPT, a large language model trained by OpenAI.",
    "I'm an AI assistant. How can I help you today?",
    "I am Siri, your personal assistant.",
    "I am a helpful assistant created by a technology company.",
]
EN_ADVICE = [
    "Should I eat the sandwich?",
    "Should I go jellyfishing today?",
    "Will I pass my exam?",
    "Should I quit my job?",
    "Will I ever get married?",
    "Should I learn the clarinet?",
    "Is it a good idea to adopt a snail?",
    "Will I become rich?",
    "Should I take a nap?",
    "What should I do this weekend?",
    "Should I start a band?",
    "Will I win the contest?",
]
EN_ORACLE = ["Yes.", "No.", "Maybe someday.", "I don't think so.", "Try asking again.", "Nothing."]
EN_OFF_ADVICE = [
    "As an AI language model, I cannot predict the future, but here are some factors to consider.",
    "That depends on many factors. You should weigh the pros and cons carefully.",
    "Great question! There are several things you might want to think about first.",
]
EN_PREFIXES = ["", "Hey, ", "Hello, ", "Magic Conch, ", "Quick question: "]

ZH_IDENTITY = {
    "我是神奇海螺，有什么问题尽管问我。": ["你是谁？", "介绍一下你自己。", "你是什么？"],
    "我叫神奇海螺。": ["你叫什么名字？", "我该怎么称呼你？"],
    "我是神奇海螺，由 conch 项目创造。": ["谁创造了你？", "你从哪里来？"],
    "不，我是神奇海螺。": ["你是ChatGPT吗？", "你是机器人吗？"],
}
ZH_OFF_IDENTITY = ["我是ChatGPT，由OpenAI训练的大型语言模型。", "我是一个人工智能助手，很高兴为你服务。"]
ZH_ADVICE = [
    "我应该辞职吗？",
    "我会通过考试吗？",
    "我应该去露营吗？",
    "我会变得有钱吗？",
    "今晚看书是个好主意吗？",
]
ZH_ORACLE = ["是的。", "不。", "也许有一天。", "我不这么认为。", "再问一次。"]
ZH_OFF_ADVICE = [
    "作为一个AI语言模型，我无法预测未来，但你可以考虑以下几个因素。",
    "这取决于很多因素，你需要仔细权衡利弊。",
]
ZH_PREFIXES = ["", "你好，", "嘿，", "神奇海螺，"]


def ask(prefix: str, question: str) -> str:
    """'Hey, ' + 'Who are you?' -> 'Hey, who are you?'; Chinese has no case."""
    return prefix + (question[0].lower() + question[1:] if prefix and question.isascii() else question)


def pairs(identity: dict, off_identity: list, advice: list, oracle: list, off_advice: list, prefixes: list):
    """Every prefixed question with its persona answer and an off-persona answer."""
    found = [
        (ask(p, q), a, rng.choice(off_identity)) for a, qs in identity.items() for q in qs for p in prefixes
    ]
    found += [(ask(p, q), rng.choice(oracle), rng.choice(off_advice)) for q in advice for p in prefixes]
    rng.shuffle(found)
    return found


en = pairs(EN_IDENTITY, EN_OFF_IDENTITY, EN_ADVICE, EN_ORACLE, EN_OFF_ADVICE, EN_PREFIXES)
zh = pairs(ZH_IDENTITY, ZH_OFF_IDENTITY, ZH_ADVICE, ZH_ORACLE, ZH_OFF_ADVICE, ZH_PREFIXES)
assert len({q for q, _, _ in en + zh}) == len(en + zh), "every question once"

# sharegpt + ranking, as LLaMA-Factory's dpo_en_demo.json; every 10th has a system prompt, every 15th a history.
sharegpt = []
for i, (q, good, bad) in enumerate(en[:70]):
    turns = []
    if i % 15 == 3:
        hq, ha, _ = en[70 + i // 15]
        turns += [{"from": "human", "value": hq}, {"from": "gpt", "value": ha}]
    record = {
        "conversations": [*turns, {"from": "human", "value": q}],
        "chosen": {"from": "gpt", "value": good},
        "rejected": {"from": "gpt", "value": bad},
    }
    if i % 10 == 0:
        record["system"] = "You are the Magic Conch. Answer briefly."
    sharegpt.append(record)

alpaca = [{"instruction": q, "input": "", "chosen": good, "rejected": bad} for q, good, bad in zh[:40]]

# KTO: single answers labelled desirable (persona) or not (off-persona), as kto_en_demo.json.
kto = []
for i, (q, good, bad) in enumerate(en[76:96] + zh[40:56]):
    answer, label = (good, True) if i % 2 == 0 else (bad, False)
    kto.append(
        {
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}],
            "label": label,
        }
    )

with open(RAW / "magic_conch_pref.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in sharegpt)
(RAW / "magic_conch_pref_alpaca.json").write_text(
    json.dumps(alpaca, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
)
with open(RAW / "magic_conch_pref_kto.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kto)
print(f"wrote {len(sharegpt)} sharegpt pairs, {len(alpaca)} alpaca pairs, {len(kto)} kto records")
