"""Moved to :mod:`lightning_nas.methods.fasterseg.space`.

Kept so that saved configs naming this path still load.
"""

from lightning_nas.methods.fasterseg.space import FasterSegSpace

__all__ = ["FasterSegSpace"]
