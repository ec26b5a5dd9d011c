"""The chat page at `/`: one static HTML file with plain JavaScript (no build step)."""

from __future__ import annotations

import functools
from pathlib import Path

PAGE = Path(__file__).with_name("static") / "chat.html"


@functools.cache
def chat_page() -> str:
    return PAGE.read_text(encoding="utf-8")
