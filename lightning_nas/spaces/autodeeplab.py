"""Moved to :mod:`lightning_nas.methods.autodeeplab.space`.

Kept so that saved configs naming this path still load.
"""

from lightning_nas.methods.autodeeplab.space import AutoDeepLabSpace

__all__ = ["AutoDeepLabSpace"]
