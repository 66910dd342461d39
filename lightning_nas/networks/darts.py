"""Moved to :mod:`lightning_nas.methods.darts.network`.

Kept so that saved configs naming this path still load.
"""

from lightning_nas.methods.darts.network import DartsCell, DartsNetwork

__all__ = ["DartsCell", "DartsNetwork"]
