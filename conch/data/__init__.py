"""Data preparation: raw alpaca/sharegpt/OpenAI files in, LLaMA-Factory-ready splits out.

See docs/data.md for the formats, reject reasons, split rule and stats fields.
"""

from conch.data.pipeline import PrepareResult, prepare
from conch.data.records import REASONS

__all__ = ["REASONS", "PrepareResult", "prepare"]
