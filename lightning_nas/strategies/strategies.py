"""Search strategies: an Optuna sampler, plus what the strategy enqueues between trials.

A strategy is the sampler of the study and, optionally, a study callback that enqueues chosen
candidates (``study.enqueue_trial``), so every worker of a shared study follows it:

* :class:`RandomSearch` — uniform over the space (``RandomSampler``).
* :class:`RandomThenRefine` — DPC's protocol: ``n_random`` uniform candidates, then mutations of
  the ``top_k`` best (one decision changed, :meth:`MutableSpace.mutate`), enqueued as trials.
* :class:`TPESearch` — Optuna's TPE (single- or multi-objective).
* :class:`NSGA2Search` — NSGA-II, passed explicitly (Optuna 5's multi-objective default is TPE).

Example:
    >>> RandomSearch(seed=0).sampler(["maximize"]).__class__.__name__
    'TrialSeededRandomSampler'
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lightning_nas.errors import ConfigError
from lightning_nas.strategies.protocols import DiscreteSpace, MutableSpace

__all__ = [
    "NSGA2Search",
    "RandomSearch",
    "RandomThenRefine",
    "Strategy",
    "TPESearch",
    "TrialSeededRandomSampler",
]

StudyCallback = Callable[[optuna.Study, FrozenTrial], None]


class TrialSeededRandomSampler(optuna.samplers.BaseSampler):
    """Uniform sampling whose every draw is seeded by ``(seed, trial number, parameter)``.

    A trial's parameters are then a function of its number alone: a resumed study (the same
    command rerun) and parallel workers never replay one another's draws, and a study is
    reproducible whatever the number of workers. (A plain ``RandomSampler(seed)`` restarts its
    sequence in every process, so a rerun would evaluate the first candidates again.)

    Args:
        seed: Base seed.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(sampler=TrialSeededRandomSampler(0))
        >>> a = study.ask({"x": optuna.distributions.CategoricalDistribution([1, 2, 3])})
        >>> again = TrialSeededRandomSampler(0)
        >>> x = optuna.distributions.CategoricalDistribution([1, 2, 3])
        >>> again.draw(0, "x", x) == a.params["x"]
        True
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        """None: every parameter is drawn independently."""
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict:
        """None (see :meth:`sample_independent`)."""
        return {}

    def draw(self, number: int, name: str, distribution: Any) -> Any:
        """The value of parameter ``name`` of trial ``number``."""
        seed = zlib.crc32(f"{self.seed}/{number}/{name}".encode())
        sampler = optuna.samplers.RandomSampler(seed=seed)
        return sampler.sample_independent(None, None, name, distribution)  # type: ignore[arg-type]

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        """A uniform draw seeded by ``(seed, trial.number, param_name)``."""
        return self.draw(trial.number, param_name, param_distribution)


def feasible(trial: FrozenTrial) -> bool:
    """Whether ``trial`` meets its constraints (``trial.set_constraint``: every value ≤ 0)."""
    return all(c <= 0 for c in (trial.constraints or {}).values())


def constraints_of(trial: FrozenTrial) -> Sequence[float]:
    """The constraint values of ``trial`` (the ``constraints_func`` of Optuna's samplers)."""
    return [float(v) for _, v in sorted((trial.constraints or {}).items())] or [0.0]


class Strategy:
    """Base class: the sampler of a study and the callbacks that steer it.

    Args:
        seed: Seed of the sampler (and of the strategy's own choices).
    """

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed

    def sampler(self, directions: Sequence[str], offset: int = 0) -> optuna.samplers.BaseSampler:
        """The study's sampler for these objective directions.

        ``offset`` is the number of trials the study held when this worker started; samplers
        that keep one random sequence per process seed it with ``seed + offset``, so a resumed
        study does not replay its first draws.
        """
        raise NotImplementedError

    def callbacks(self, space: DiscreteSpace) -> list[StudyCallback]:
        """Study callbacks run after each finished trial (default: none)."""
        return []

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _random(seed: int | None) -> optuna.samplers.BaseSampler:
    if seed is None:
        return optuna.samplers.RandomSampler()
    return TrialSeededRandomSampler(seed)


def _offset(seed: int | None, offset: int) -> int | None:
    return None if seed is None else seed + offset


class RandomSearch(Strategy):
    """Uniform random search.

    Every trial's draws are seeded by its number (:class:`TrialSeededRandomSampler`);
    ``seed: null`` gives Optuna's unseeded ``RandomSampler``.
    """

    def sampler(self, directions: Sequence[str], offset: int = 0) -> optuna.samplers.BaseSampler:
        """The trial-seeded random sampler."""
        return _random(self.seed)


class TPESearch(Strategy):
    """Optuna's TPE sampler (constraints respected).

    Args:
        seed: Sampler seed.
        n_startup_trials: Random trials before TPE models the history.
        multivariate: Model the decisions jointly.
    """

    def __init__(
        self, seed: int | None = 0, n_startup_trials: int = 10, multivariate: bool = True
    ) -> None:
        super().__init__(seed)
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate

    def sampler(self, directions: Sequence[str], offset: int = 0) -> optuna.samplers.BaseSampler:
        """``TPESampler`` with these settings (seeded ``seed + offset``)."""
        return optuna.samplers.TPESampler(
            seed=_offset(self.seed, offset),
            n_startup_trials=self.n_startup_trials,
            multivariate=self.multivariate,
            constraints_func=constraints_of,
        )


class NSGA2Search(Strategy):
    """NSGA-II for multi-objective studies (constraints respected).

    Args:
        seed: Sampler seed.
        population_size: Individuals per generation.
        mutation_prob: Per-parameter mutation probability (``None``: 1 / number of parameters).
        crossover_prob: Probability of a crossover child.
    """

    def __init__(
        self,
        seed: int | None = 0,
        population_size: int = 20,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.9,
    ) -> None:
        super().__init__(seed)
        if population_size < 2:
            raise ConfigError(f"NSGA2Search.population_size: expected >= 2, got {population_size}")
        self.population_size = population_size
        self.mutation_prob = mutation_prob
        self.crossover_prob = crossover_prob

    def sampler(self, directions: Sequence[str], offset: int = 0) -> optuna.samplers.BaseSampler:
        """``NSGAIISampler`` with these settings (seeded ``seed + offset``)."""
        return optuna.samplers.NSGAIISampler(
            seed=_offset(self.seed, offset),
            population_size=self.population_size,
            mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob,
            constraints_func=constraints_of,
        )


class RandomThenRefine(Strategy):
    """DPC's search: random candidates, then local refinement around the best ones.

    After ``n_random`` finished trials, each finished trial triggers one enqueued mutation of a
    genotype drawn uniformly from the ``top_k`` best feasible ones so far (the first objective),
    unless enough trials are already waiting. Mutations that repeat an evaluated or queued
    genotype are redrawn (up to 20 times). The parent's number is stored as the user attribute
    ``refined_from``.

    Args:
        n_random: Uniform random trials first.
        top_k: How many of the best trials to refine around.
        seed: Seed of the random sampler and of the mutations.
    """

    def __init__(self, n_random: int = 20, top_k: int = 5, seed: int | None = 0) -> None:
        super().__init__(seed)
        if n_random < 1 or top_k < 1:
            raise ConfigError(
                f"RandomThenRefine: n_random and top_k must be >= 1, got {n_random}, {top_k}"
            )
        self.n_random = n_random
        self.top_k = top_k

    def sampler(self, directions: Sequence[str], offset: int = 0) -> optuna.samplers.BaseSampler:
        """The trial-seeded random sampler: the random phase (refinements are enqueued)."""
        return _random(self.seed)

    def callbacks(self, space: DiscreteSpace) -> list[StudyCallback]:
        """The refinement callback (the space must be a :class:`MutableSpace`)."""
        if not isinstance(space, MutableSpace):
            raise ConfigError(
                f"RandomThenRefine: {type(space).__name__} has no mutate(genotype, rng); use "
                "RandomSearch or give the space a mutation"
            )
        return [self._make_refiner(space)]

    def _make_refiner(self, space: MutableSpace) -> StudyCallback:
        def refine(study: optuna.Study, trial: FrozenTrial) -> None:
            trials = study.get_trials(deepcopy=False)
            done = [
                t
                for t in trials
                if t.state == TrialState.COMPLETE and t.values is not None and feasible(t)
            ]
            if len(done) < self.n_random:
                return
            if sum(t.state == TrialState.WAITING for t in trials) > 0:
                return  # one mutation waits already: every worker's next ask takes it
            sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
            best = sorted(done, key=lambda t: (sign * t.values[0], t.number))[: self.top_k]
            seen = {_key(t.params) for t in trials}
            rng = random.Random(f"{self.seed}-{len(trials)}")
            for _ in range(20):
                parent = rng.choice(best)
                child = space.mutate(space_genotype(space, parent), rng)
                params = space.params(child)
                if _key(params) not in seen:
                    study.enqueue_trial(params, user_attrs={"refined_from": parent.number})
                    return

        return refine


def space_genotype(space: DiscreteSpace, trial: FrozenTrial) -> Any:
    """The genotype a finished trial evaluated (its ``genotype`` user attribute, else resampled)."""
    from lightning_nas import genotypes

    stored = trial.user_attrs.get("genotype")
    if stored is not None:
        return genotypes.from_dict(stored, source=f"trial {trial.number}")
    return space.sample(optuna.trial.FixedTrial(trial.params, trial.number))


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))
