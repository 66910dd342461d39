"""Callbacks of lightning_nas, referred to in YAML as ``callbacks.<Name>``."""

from callbacks.architecture_logger import ArchitectureLogger
from callbacks.distillation import Distillation
from callbacks.genotype_writer import GenotypeWriter
from callbacks.latency_regularization import LatencyRegularization
from callbacks.prediction_writer import PredictionWriter
from lightning_nas.loss_terms import LossTerm

__all__ = [
    "ArchitectureLogger",
    "Distillation",
    "GenotypeWriter",
    "LatencyRegularization",
    "LossTerm",
    "PredictionWriter",
]
