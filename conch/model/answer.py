"""`python -m conch.model.answer MODEL PROMPT MAX_NEW_TOKENS`: a model's greedy answer to one user prompt, as JSON.

The serve rule runs this in a process of its own, so the model it loads (and the CUDA context) is gone before
the server loads the same model: two copies of a model that fills a GPU do not fit on it.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> None:
    from conch.model.modeling import generate, load, render

    model_dir, prompt, max_new_tokens = sys.argv[1:] if argv is None else argv
    model, tokenizer = load(model_dir)
    (answer,) = generate(
        model, tokenizer, [render(tokenizer, [{"role": "user", "content": prompt}])], int(max_new_tokens)
    )
    # The last line of stdout: libraries may print before it.
    print(json.dumps({"answer": answer}, ensure_ascii=False))


if __name__ == "__main__":
    main()
