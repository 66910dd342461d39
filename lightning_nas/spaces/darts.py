"""Moved to :mod:`lightning_nas.methods.darts.space`.

Kept so that saved configs naming this path still load.
"""

from lightning_nas.methods.darts.space import DartsSpace

__all__ = ["DartsSpace"]
