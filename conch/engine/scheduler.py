"""Who runs in the next step, and in which KV slot.

Waiting requests take free slots in arrival order. Each step decodes one token for every request whose prompt
is done and prefills the next chunk of the prompts that are not, at most `max_prefill_tokens` prompt tokens per
step (first come, first served), so a long prompt is taken in chunks and never stalls the rows that are
generating for longer than one chunk.

`running` is in slot order (running[i] holds slot i): first the decoding rows, then the prompts still being
prefilled, oldest first. Prefills finish in that order, so the decoding rows always occupy slots 0..n-1 and
attention reads them without gathering. When requests leave, the rows behind them move into the holes.

The queue's length limit is the client's business (conch.engine.client): it knows when to answer 503 without
asking this process.
"""

from __future__ import annotations

import collections
import threading
import time

from conch.engine.request import Request


class Scheduler:
    def __init__(self, max_batch_size: int, max_prefill_tokens: int):
        self.max_batch_size, self.max_prefill_tokens = max_batch_size, max_prefill_tokens
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[Request] = []  # changed by the engine thread only
        # Held only for queue bookkeeping, never during model work.
        self._cv = threading.Condition(threading.Lock())
        self.stopping = False

    def add(self, req: Request) -> None:
        with self._cv:
            self.waiting.append(req)
            self._cv.notify()

    def unqueue(self, req: Request) -> bool:
        """Take a request out of the queue; False if it is not there (running already, or finished)."""
        with self._cv:
            if req in self.waiting:
                self.waiting.remove(req)
                return True
            return False

    def admit(self) -> list[Request]:
        """Move waiting requests into free slots; returns them. Blocks while there is nothing to do."""
        with self._cv:
            while not self.stopping and not self.waiting and not self.running:
                self._cv.wait()
            admitted, now = [], time.monotonic()
            while self.waiting and len(self.running) < self.max_batch_size:
                req = self.waiting.popleft()
                req.slot, req.admitted = len(self.running), now
                self.running.append(req)
                admitted.append(req)
            return admitted

    def plan(self) -> tuple[list[Request], list[tuple[Request, int]]]:
        """The decoding rows (slots 0..n-1), and (request, prompt tokens to run) for this step's prefills."""
        decoding = 0
        while decoding < len(self.running) and self.running[decoding].prefilled:
            decoding += 1
        chunks, budget = [], self.max_prefill_tokens
        for req in self.running[decoding:]:
            if budget <= 0:
                break
            take = min(budget, len(req.prompt_ids) - req.past)
            chunks.append((req, take))
            budget -= take
        return self.running[:decoding], chunks

    def release(self, done: set[Request]) -> list[tuple[int, int, int]]:
        """Remove finished requests and close the gaps; returns the KV moves (from slot, to slot, tokens)."""
        keep = [req for req in self.running if req not in done]
        decoders = [req for req in keep if req.prefilled]
        prefilling = [req for req in keep if not req.prefilled]
        n = len(decoders)
        holes = iter(sorted(set(range(n)) - {req.slot for req in decoders}))
        moves = []
        for req in decoders:  # rows already below n stay; the others fill the holes
            if req.slot >= n:
                moves.append((req, next(holes)))
        # Prompts being prefilled follow in arrival order; their targets only ever lie below where they are,
        # so moving them in ascending order never overwrites a row that has yet to move.
        moves += [(req, n + i) for i, req in enumerate(prefilling) if req.slot != n + i]
        copies = []
        for req, slot in moves:
            copies.append((req.slot, slot, req.past))
            req.slot = slot
        self.running = sorted(keep, key=lambda req: req.slot)
        return copies

    def stop(self) -> None:
        with self._cv:
            self.stopping = True
            self._cv.notify()

    def drain(self) -> list[Request]:
        """Everything still running or waiting, leaving both empty (at shutdown)."""
        with self._cv:
            left = [*self.running, *self.waiting]
            self.running, self.waiting = [], collections.deque()
            return left
