"""Discrete networks built from genotypes: what is retrained, evaluated and exported."""

from lightning_nas.networks.autodeeplab import AutoDeepLabCell, AutoDeepLabNetwork
from lightning_nas.networks.darts import DartsCell, DartsNetwork
from lightning_nas.networks.fasterseg import FasterSegNetwork

__all__ = [
    "AutoDeepLabCell",
    "AutoDeepLabNetwork",
    "DartsCell",
    "DartsNetwork",
    "FasterSegNetwork",
]
