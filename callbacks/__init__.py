"""Callbacks of lightning_nas, referred to in YAML as ``callbacks.<Name>``."""

from callbacks.architecture_logger import ArchitectureLogger
from callbacks.branch_selection import BranchSelection
from callbacks.distillation import Distillation
from callbacks.genotype_writer import GenotypeWriter
from callbacks.latency_regularization import LatencyRegularization
from callbacks.prediction_writer import PredictionWriter
from lightning_nas.loss_terms import LossTerm

__all__ = [
    "ArchitectureLogger",
    "BranchSelection",
    "Distillation",
    "GenotypeWriter",
    "LatencyRegularization",
    "LossTerm",
    "PredictionWriter",
]
