"""Errors lightning_nas raises for bad user input (the CLI prints them as one line)."""


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key, the value and the expectation."""


def check_min_ints(owner: str, checks: tuple[tuple[str, object, int], ...]) -> None:
    """Raise :class:`ConfigError` unless each ``(name, value, low)`` is an integer ``>= low``.

    Example:
        >>> check_min_ints("Net", (("layers", 2, 3),))
        Traceback (most recent call last):
        ...
        lightning_nas.errors.ConfigError: Net: layers must be an integer >= 3, got 2
    """
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
