"""Errors meant for users: one line, naming the input and what is wrong."""


class UserError(Exception):
    """Bad input from a user; the CLI prints it as one line and exits with code 2."""


class DataError(UserError):
    """A dataset that cannot be read: names the file, the 1-based line and the field."""


class ConfigError(UserError):
    """A training or sweep configuration that cannot be used."""
