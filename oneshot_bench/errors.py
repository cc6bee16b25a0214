"""Errors a user can act on. `run.py` prints their message alone (no traceback) and exits with code 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message names the problem and the fix."""


class ConfigError(UserError):
    """Unknown or inconsistent configuration (unknown method/space/data, unsupported pairing...)."""


class DataError(UserError):
    """Missing or malformed data files."""


class ArchStringError(UserError, ValueError):
    """An architecture string that does not parse in the given search space."""


class DivergenceError(UserError):
    """Training produced a non-finite loss; the message says which phase and what to lower."""


def cut_middle(text: str, limit: int, length: int | None = None) -> str:
    """`text` as a message quotes it: cut in the middle when longer than `limit` characters, followed by its length
    (`length`, when the text stands for a longer value, e.g. its repr), since a 5,000-character value is noise."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-limit // 2:]} ({len(text) if length is None else length:,} characters)"
