"""Errors lightning_nas raises for bad user input (the CLI prints them as one line)."""


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key, the value and the expectation."""
