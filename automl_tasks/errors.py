"""Errors a user can act on: each message names the field, column, month or value."""


class AutomlError(Exception):
    """Base for errors caused by user input or data; the CLI prints them on one line."""


class SpecError(AutomlError):
    """The model spec is invalid (names the field)."""


class DataError(AutomlError):
    """The data does not fit the spec (names the column, month or value)."""


class TuningError(AutomlError):
    """Tuning could not produce a model (for example every trial failed)."""


class ConfigError(AutomlError):
    """A setting in the environment is unusable or unsafe (names the variable, never a secret)."""
