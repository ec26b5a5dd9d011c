"""The walkthrough's server, kept as the benchmark's baseline: a blocking `model.generate` inside an `async def`
handler, so every request waits for the one before it (and the event loop stalls while it runs).

    python bench/reference_server.py --model results/merged/default/model --port 8001
"""

import argparse

import torch
import uvicorn
from fastapi import FastAPI

from conch.model.modeling import generate as generate_greedy
from conch.model.modeling import load, render


def create_app(model_path: str, max_new_tokens: int) -> FastAPI:
    app = FastAPI()
    model, tokenizer = load(model_path)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/generate")
    async def generate(prompt: str, max_new_tokens: int = max_new_tokens):
        prompt_text = render(tokenizer, [{"role": "user", "content": prompt}])
        (text,) = generate_greedy(
            model, tokenizer, [prompt_text], max_new_tokens
        )  # blocks the loop, on purpose
        return {"generated_text": text}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # While `generate` blocks the loop, uvicorn's keep-alive timer (5 s) can fire before the loop reads a request
    # that has already arrived, and closes that client's connection: a long timeout keeps clients connected.
    uvicorn.run(
        create_app(args.model, args.max_new_tokens),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_keep_alive=3600,
    )


if __name__ == "__main__":
    main()
