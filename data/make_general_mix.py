"""Pick the general instruction records mixed into SFT on a pretrained base (config/smollm2-135m.yaml).

Fine-tuning a pretrained instruct model on the persona alone teaches it that every question gets a terse
oracle answer; a share of ordinary instruction data keeps its general answers. The records come from
LLaMA-Factory's alpaca demos (Apache-2.0; data/raw/LICENSE-llamafactory-demo):

    python data/make_general_mix.py ../shared/datasets/llamafactory-demo

Short records only (CPU training time grows with tokens), no code, deterministic (seed 42). A record that
answers a retention question (data/retention/general_qa.jsonl) is left out: it shares the question's topic and
contains one of its references. The retention evaluation must measure what the base model already knew, not
what this mix taught (tests/test_retention.py checks it again on the written files).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conch.evaluation.retention import leaks, load_questions  # noqa: E402

PICKS = {
    # demo file -> (output file, records, longest output in characters)
    "alpaca_en_demo.json": ("general_en.json", 40, 200),
    "alpaca_zh_demo.json": ("general_zh.json", 24, 80),
}
LONGEST_PROMPT = 160
CODE_HINTS = ("```", "def ", "function", "SQL", "HTML", "python", "Python", "代码", "程序")


def usable(record: dict, longest_output: int, questions: list[dict]) -> bool:
    prompt = record["instruction"] + record.get("input", "")
    text = prompt + record["output"]
    return (
        len(record["output"]) <= longest_output
        and len(prompt) <= LONGEST_PROMPT
        and not any(hint in text for hint in CODE_HINTS)
        and not any(leaks(q, prompt, record["output"]) for q in questions)
    )


def main(demo_dir: str) -> None:
    questions = load_questions(HERE / "retention" / "general_qa.jsonl")
    for source, (target, count, longest) in PICKS.items():
        records = json.loads((Path(demo_dir) / source).read_text(encoding="utf-8"))
        pool = [r for r in records if usable(r, longest, questions)]
        picked = random.Random(42).sample(pool, count)
        out = [{k: r[k] for k in ("instruction", "input", "output")} for r in picked]
        (HERE / "raw" / target).write_text(
            json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        print(f"{target}: {count} of {len(pool)} usable records in {source} ({len(records)} in all)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parent.parent / "shared/datasets/llamafactory-demo"))
