"""Generated token ids to the text a client sees: incremental decoding, stop strings, surrounding whitespace.

Streamed pieces concatenate to exactly the non-streamed answer, and both equal what
`conch.model.modeling.generate` returns offline (decoded without special tokens, stripped), so a client gets the same
answer whichever way it asks.
"""

from __future__ import annotations


class Detokenizer:
    def __init__(self, tokenizer, stop: list[str] | tuple[str, ...] = (), incremental: bool = True):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        # Without streaming or stop strings nobody looks at the text before the end: decode it once, then.
        self.incremental = incremental or bool(self.stop)
        self.ids: list[int] = []
        # Decoding a window of recent tokens, not the whole answer, keeps each step cheap; a window ending in an
        # incomplete UTF-8 sequence ("\ufffd") waits for the token that completes it.
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""
        self._sent = 0
        self.stopped = False
        self.finished = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _append(self, piece: str) -> None:
        if not self.text:
            piece = piece.lstrip()
        start = self._sent
        self.text += piece
        for s in self.stop:
            # A stop string cannot start inside text already sent: `pending` holds back any tail that could
            # begin one.
            at = self.text.find(s, start)
            if at != -1:
                self.text = self.text[:at]
                self.stopped = True

    def add(self, token_id: int) -> bool:
        """Take one generated token; True when a stop string has ended the answer."""
        self.ids.append(token_id)
        if not self.incremental:
            return False
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        new = self._decode(self.ids[self._prefix_offset :])
        if len(new) > len(prefix) and not new.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
            self._append(new[len(prefix) :])
        return self.stopped

    def finish(self) -> None:
        """Flush whatever the window still holds (e.g. a character cut off by the token limit)."""
        if not self.stopped:
            prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
            new = self._decode(self.ids[self._prefix_offset :])
            if len(new) > len(prefix):
                self._append(new[len(prefix) :])
        self.text = self.text.rstrip()
        self.finished = True

    def _stop_prefix_len(self) -> int:
        """Length of the longest tail of the text that could be the start of a stop string."""
        longest = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), longest, -1):
                if self.text.endswith(s[:k]):
                    longest = k
                    break
        return longest

    def pending(self) -> str:
        """Text that is now certain to be part of the answer and has not been handed out yet."""
        # Trailing whitespace waits: it is dropped if the answer ends there (or a stop string starts there).
        certain = self.text if self.finished else self.text[: len(self.text) - self._stop_prefix_len()]
        end = len(certain.rstrip())
        if end <= self._sent:
            return ""
        piece, self._sent = self.text[self._sent : end], end
        return piece
