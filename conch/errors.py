"""Errors a user can act on: each names the file, line or key at fault and why."""

import contextlib
import difflib
import sys


class ConchError(Exception):
    """Base class: the message is meant for a person, so no traceback is needed to act on it."""


class DataError(ConchError):
    """A raw data file cannot be read as a whole (unknown format, undecodable, truncated)."""


class ConfigError(ConchError):
    """A config value is missing, mistyped or out of range."""


def did_you_mean(word: object, choices, otherwise: str = "") -> str:
    """ "; did you mean 'x'?" for the closest of `choices` to a misspelt name, else `otherwise`."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else otherwise


@contextlib.contextmanager
def reported(step: str, log):
    """A ConchError ends a rule's job with its message in the log and on stderr, and no traceback."""
    try:
        yield
    except ConchError as err:
        log.write(f"{step} failed: {err}\n")
        print(f"{step} failed: {err}", file=sys.stderr)
        sys.exit(1)
