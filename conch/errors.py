"""Errors a user can act on: each names the file, line or key at fault and why."""


class ConchError(Exception):
    """Base class: the message is meant for a person, so no traceback is needed to act on it."""


class DataError(ConchError):
    """A raw data file cannot be read as a whole (unknown format, undecodable, truncated)."""


class ConfigError(ConchError):
    """A config value is missing, mistyped or out of range."""
