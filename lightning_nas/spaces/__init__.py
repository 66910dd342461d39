"""Search spaces (supernets): :class:`~lightning_nas.spaces.base.SearchSpace` and its protocols.

Every method's space lives in its package (``lightning_nas/methods/<name>/space.py``); the short
class paths YAML files use, ``lightning_nas.spaces.<Space>`` (e.g.
``lightning_nas.spaces.FasterSegSpace``), resolve to it lazily (PEP 562).
"""

from typing import Any

from lightning_nas.spaces.base import SearchSpace

__all__ = ["SearchSpace"]


def __getattr__(name: str) -> Any:
    """``lightning_nas.spaces.<Space>``: the search space a built-in method exports."""
    from lightning_nas.methods import lookup

    obj = lookup(name)
    if isinstance(obj, type) and issubclass(obj, SearchSpace):
        return obj
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
