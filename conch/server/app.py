"""Minimal app: GET /generate, POST /v1/chat/completions, GET /health. (Extended by the serving issue.)"""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from conch.modeling import generate, load, render


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[Message]
    max_tokens: int | None = None


def create_app(model_path: str, name: str, max_new_tokens: int = 128) -> FastAPI:
    app = FastAPI(title="conch")
    model, tokenizer = load(model_path)
    lock = asyncio.Lock()

    async def complete(messages: list[dict], max_tokens: int) -> str:
        prompt = render(tokenizer, messages)
        async with lock:
            (text,) = await asyncio.to_thread(generate, model, tokenizer, [prompt], max_tokens)
        return text

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": name}

    @app.get("/generate")
    async def generate_text(prompt: str, max_new_tokens: int = max_new_tokens):
        return {"generated_text": await complete([{"role": "user", "content": prompt}], max_new_tokens)}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        if req.model not in (None, name):
            raise HTTPException(404, f"model {req.model!r} not found; available: {name}")
        text = await complete([m.model_dump() for m in req.messages], min(req.max_tokens or max_new_tokens,
                                                                           max_new_tokens))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }

    return app
