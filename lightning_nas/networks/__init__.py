"""Discrete networks built from genotypes: what is retrained, evaluated and exported.

Every method's network lives in its package (``lightning_nas/methods/<name>/network.py``); the
short class paths YAML files use, ``lightning_nas.networks.<Network>`` (e.g.
``lightning_nas.networks.DartsNetwork``), resolve to it lazily (PEP 562).
"""

from typing import Any

__all__: list[str] = []


def __getattr__(name: str) -> Any:
    """``lightning_nas.networks.<Network>``: the network (or cell) a built-in method exports."""
    from torch import nn

    from lightning_nas.methods import lookup

    obj = lookup(name)
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return obj
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
