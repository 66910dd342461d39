"""Callbacks of lightning_nas, referred to in YAML as ``callbacks.<Name>``.

The shared callbacks live here; a method's own callbacks live in its package
(``lightning_nas/methods/<name>/callbacks.py``) and resolve lazily as ``callbacks.<Name>`` too
(e.g. ``callbacks.BranchSelection``, FasterSeg's).
"""

from typing import Any

from callbacks.architecture_logger import ArchitectureLogger
from callbacks.ddp_fault_guard import DDPFaultGuard
from callbacks.distillation import Distillation
from callbacks.exact_resume import ExactResume
from callbacks.genotype_writer import GenotypeWriter
from callbacks.latency_regularization import LatencyRegularization
from callbacks.prediction_writer import PredictionWriter
from lightning_nas.loss_terms import LossTerm

__all__ = [
    "ArchitectureLogger",
    "DDPFaultGuard",
    "Distillation",
    "ExactResume",
    "GenotypeWriter",
    "LatencyRegularization",
    "LossTerm",
    "PredictionWriter",
]


def __getattr__(name: str) -> Any:
    """``callbacks.<Name>``: a callback a built-in method exports."""
    from lightning.pytorch import Callback

    from lightning_nas.methods import lookup

    obj = lookup(name)
    if isinstance(obj, type) and issubclass(obj, Callback):
        return obj
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
