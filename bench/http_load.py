"""A minimal keep-alive HTTP/1.1 client for load generation.

The load generator shares the CPUs with the servers it measures, so it must cost far less per request than any
of them (httpx costs about a millisecond per request, and more per streamed chunk). It speaks just enough HTTP:
GET and POST with a JSON body, Content-Length and chunked responses, and Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass


@dataclass
class Answer:
    text: str
    seconds: float  # request sent to last byte
    first_token_seconds: float  # request sent to the first piece of text (the whole answer, unstreamed)


class Connection:
    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _send(self, method: str, target: str, body: bytes | None) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        return int(lines[0].split(" ", 2)[1]), headers

    async def _chunks(self, headers: dict):
        """The body, piece by piece as it arrives."""
        if headers.get("transfer-encoding", "").lower() != "chunked":
            yield await self.reader.readexactly(int(headers.get("content-length", 0)))
            return
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return
            yield data[:-2]

    async def _body(self, headers: dict) -> bytes:
        return b"".join([chunk async for chunk in self._chunks(headers)])

    async def get_json(self, target: str) -> Answer:
        """A GET whose JSON answer holds `generated_text` (the walkthrough's /generate)."""
        start = time.perf_counter()
        status, headers = await self._send("GET", target, None)
        body = json.loads(await self._body(headers))
        if status != 200:
            raise RuntimeError(f"GET {target}: HTTP {status}: {body}")
        seconds = time.perf_counter() - start
        return Answer(body["generated_text"], seconds, seconds)

    async def post_chat(self, path: str, body: dict) -> Answer:
        """A streamed chat completion: its text, total time and time to the first piece of text."""
        start = time.perf_counter()
        status, headers = await self._send("POST", path, json.dumps(body).encode())
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {(await self._body(headers))[:500]!r}")
        pieces, first, pending = [], None, b""
        async for chunk in self._chunks(headers):
            pending += chunk
            *events, pending = pending.split(b"\n\n")
            for event in events:
                data = event.removeprefix(b"data: ").strip()
                if not data or data == b"[DONE]":
                    continue
                for choice in json.loads(data).get("choices", []):
                    if piece := (choice.get("delta") or {}).get("content"):
                        first = first or time.perf_counter() - start
                        pieces.append(piece)
        seconds = time.perf_counter() - start
        return Answer("".join(pieces), seconds, first or seconds)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
