"""Errors a user can act on. `run.py` prints their message alone (no traceback) and exits with code 2."""


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
