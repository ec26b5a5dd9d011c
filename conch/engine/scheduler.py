"""Who runs next: the waiting queue, and which waiting requests join the batch at each step.

Requests join while the batch has free slots and the prompts admitted together stay under a token budget (one
prefill pass runs them all, and everyone else's next token waits for it). The queue's length limit is the
client's business (conch.engine.client): it knows when to answer 503 without asking this process.
"""

from __future__ import annotations

import collections
import threading

from conch.engine.request import Request


class Scheduler:
    def __init__(self, max_batch_size: int, max_prefill_tokens: int):
        self.max_batch_size, self.max_prefill_tokens = max_batch_size, max_prefill_tokens
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[Request] = []  # in batch order; changed by the engine thread only
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
        """The requests that join the batch now; blocks while there is nothing to do."""
        with self._cv:
            while not self.stopping and not self.waiting and not self.running:
                self._cv.wait()
            admitted, tokens = [], 0
            while self.waiting and len(self.running) + len(admitted) < self.max_batch_size:
                nxt = self.waiting[0]
                if admitted and tokens + len(nxt.prompt_ids) > self.max_prefill_tokens:
                    break
                admitted.append(self.waiting.popleft())
                tokens += len(nxt.prompt_ids)
            return admitted

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
