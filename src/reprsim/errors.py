"""Exceptions shared by every stage."""


class ReprsimError(Exception):
    """An error whose message is meant for the user: the CLI prints it as one line (exit code 2)."""


class ConfigError(ReprsimError, ValueError):
    """A malformed or impossible configuration; the message names the key path and a fix."""
