"""Errors the CLI turns into one line and an exit code, instead of a traceback."""


class MagpieError(Exception):
    """A problem the user can fix; the message says what to do. Exit code 1."""

    exit_code = 1


class ConfigError(MagpieError):
    """Bad input caught before anything runs or is written. Exit code 2."""

    exit_code = 2


class IncompleteRunError(MagpieError):
    """The merge found shards that are not done; the message lists them."""

    exit_code = 3
