"""Moved to :mod:`lightning_nas.methods.fasterseg.network`.

Kept so that saved configs naming this path still load.
"""

from lightning_nas.methods.fasterseg.network import FasterSegNetwork

__all__ = ["FasterSegNetwork"]
