"""Errors a user can act on: each names the file, line or key at fault and why."""

import difflib


class ConchError(Exception):
    """Base class: the message is meant for a person, so no traceback is needed to act on it."""


class DataError(ConchError):
    """A raw data file cannot be read as a whole (unknown format, undecodable, truncated)."""


class ConfigError(ConchError):
    """A config value is missing, mistyped or out of range."""


class JobFailed(ConchError):
    """A workflow job cannot finish: its message, as is, is all the user sees (conch.jobs.job.run_job
    writes it to stderr and the job's log and exits with status 1). Anything else a job raises is a bug and
    keeps its traceback."""


def did_you_mean(word: object, choices, otherwise: str = "") -> str:
    """ "; did you mean 'x'?" for the closest of `choices` to a misspelt name, else `otherwise`."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else otherwise
