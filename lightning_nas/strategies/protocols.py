"""What a discrete search needs of a method: a space to sample and an evaluator to score.

Discrete strategies (random search, DPC's random-then-refine, TPE, NSGA-II) are Optuna studies;
these are the two things a method supplies. They are abstract base classes (nominal, not
structural protocols) so that a YAML config can name any subclass with
``class_path`` and an overlay can change its ``init_args`` alone, as in ``lightning fit``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from lightning_nas.genotypes import Genotype

__all__ = ["DiscreteSpace", "Evaluator", "MutableSpace"]


class DiscreteSpace(ABC):
    """A discrete architecture space sampled through an Optuna trial.

    ``sample`` makes **one** ``trial.suggest_*`` call per architecture decision (categorical
    choices with stable, JSON-able choice lists), so Optuna's samplers and its dashboard see the
    real parameters, and a trial's ``params`` alone determine its genotype. A decision that does
    not apply to a candidate is still suggested (so every trial has the same parameters).
    """

    @abstractmethod
    def sample(self, trial: optuna.Trial) -> Genotype:
        """The genotype of ``trial``'s suggested parameters."""
        ...

    @abstractmethod
    def params(self, genotype: Genotype) -> dict[str, object]:
        """The trial parameters that :meth:`sample` maps to ``genotype`` (its inverse).

        Used to enqueue known genotypes (published cells, mutations) with
        ``study.enqueue_trial(params)``.
        """
        ...


class MutableSpace(DiscreteSpace):
    """A discrete space with a local move, for refinement and evolution."""

    @abstractmethod
    def mutate(self, genotype: Genotype, rng: object) -> Genotype:
        """A valid neighbour of ``genotype`` (one decision changed).

        ``rng`` is a ``random.Random``: the engine seeds it, so refinement is reproducible.
        """
        ...


class Evaluator(ABC):
    """Scores a candidate genotype: the objective value(s) of a study.

    ``directions`` has one entry per returned value (``"maximize"`` / ``"minimize"``), in order.
    """

    directions: Sequence[str]
    """``"maximize"`` / ``"minimize"`` per returned value (a class attribute or property)."""

    @abstractmethod
    def __call__(
        self, genotype: Genotype, run_dir: Path, trial: optuna.Trial | None = None
    ) -> Sequence[float]:
        """Train or measure ``genotype``; return the objective values.

        What it keeps (checkpoints, logs) goes under ``run_dir``; ``trial`` (when given) is for
        pruning callbacks.
        """
        ...
