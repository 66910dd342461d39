"""Discrete architecture search on Optuna: spaces, evaluators, strategies, the study runner.

* :mod:`~lightning_nas.strategies.protocols` — :class:`DiscreteSpace`, :class:`MutableSpace`,
  :class:`Evaluator`: what a method supplies.
* :mod:`~lightning_nas.strategies.strategies` — :class:`RandomSearch`,
  :class:`RandomThenRefine` (DPC), :class:`TPESearch`, :class:`NSGA2Search`.
* :mod:`~lightning_nas.strategies.evaluator` — :class:`LightningEvaluator`: fit a candidate.
* :mod:`~lightning_nas.strategies.study` — :class:`DiscreteSearch`: the study, its storage, the
  worker loop, export of the best genotypes.
* :mod:`~lightning_nas.strategies.fidelity` — proxy-vs-end-to-end rank agreement.
* :mod:`~lightning_nas.strategies.cli` — ``lightning-nas study``.
"""

from lightning_nas.strategies.evaluator import LightningEvaluator
from lightning_nas.strategies.protocols import DiscreteSpace, Evaluator, MutableSpace
from lightning_nas.strategies.strategies import (
    NSGA2Search,
    RandomSearch,
    RandomThenRefine,
    Strategy,
    TPESearch,
)
from lightning_nas.strategies.study import ConstrainedSpace, DiscreteSearch

__all__ = [
    "ConstrainedSpace",
    "DiscreteSearch",
    "DiscreteSpace",
    "Evaluator",
    "LightningEvaluator",
    "MutableSpace",
    "NSGA2Search",
    "RandomSearch",
    "RandomThenRefine",
    "Strategy",
    "TPESearch",
]
