"""Moved to :mod:`lightning_nas.methods.autodeeplab.network`.

Kept so that saved configs naming this path still load.
"""

from lightning_nas.methods.autodeeplab.network import AutoDeepLabCell, AutoDeepLabNetwork

__all__ = ["AutoDeepLabCell", "AutoDeepLabNetwork"]
