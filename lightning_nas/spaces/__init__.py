"""Plug-in search spaces (supernets). Each is one file; see :class:`SearchSpace`."""

from lightning_nas.spaces.autodeeplab import AutoDeepLabSpace
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.fasterseg import FasterSegSpace

__all__ = ["DartsSpace", "SearchSpace"]
__all__ += ["AutoDeepLabSpace", "FasterSegSpace"]
