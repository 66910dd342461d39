"""Discrete architecture search on Optuna: spaces, evaluators, strategies, the study runner.

* :mod:`~lightning_nas.strategies.protocols` — :class:`DiscreteSpace`, :class:`MutableSpace`,
  :class:`Evaluator`: what a method supplies.
* :mod:`~lightning_nas.strategies.strategies` — :class:`RandomSearch`,
  :class:`RandomThenRefine` (DPC), :class:`TPESearch`, :class:`NSGA2Search`.
* :mod:`~lightning_nas.strategies.evaluator` — :class:`LightningEvaluator`: fit a candidate.
* :mod:`~lightning_nas.strategies.study` — :class:`DiscreteSearch`: the study, its storage, the
  worker loop, export of the best genotypes.
* :mod:`~lightning_nas.strategies.sampling` — :func:`random_space_of` a genotype,
  :class:`ProductSpace`, :func:`sample_genotypes` (seeded, optionally latency-matched),
  :func:`latency_function`: random baselines.
* :mod:`~lightning_nas.strategies.fidelity` — proxy-vs-end-to-end rank agreement.
* :mod:`~lightning_nas.strategies.cli` — ``lightning-nas study``.
"""

from typing import Any

_EXPORTS = {
    "LightningEvaluator": "evaluator",
    "DiscreteSpace": "protocols",
    "Evaluator": "protocols",
    "MutableSpace": "protocols",
    "NSGA2Search": "strategies",
    "RandomSearch": "strategies",
    "RandomThenRefine": "strategies",
    "Strategy": "strategies",
    "TPESearch": "strategies",
    "TrialSeededRandomSampler": "strategies",
    "ProductSpace": "sampling",
    "latency_function": "sampling",
    "random_space_of": "sampling",
    "sample_genotypes": "sampling",
    "ConstrainedSpace": "study",
    "DiscreteSearch": "study",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Lazy exports (PEP 562): a method's space imports the protocols without torch or Optuna."""
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
