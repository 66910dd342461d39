"""Random genotypes: a genotype's discrete space, seeded uniform draws, latency-matched draws.

* :func:`random_space_of` — the discrete space of genotypes shaped like a given one (its kind's
  ``random_space`` class attribute names the function that builds it).
* :class:`ProductSpace` — a :class:`~lightning_nas.strategies.protocols.MutableSpace` whose
  genotypes are in one-to-one correspondence with the product of its decisions' choices. Each
  decision drawn uniformly and independently (what :class:`RandomSearch` does) then gives a
  uniform draw over its genotypes: this is how the spaces of random baselines are built.
* :func:`sample_genotypes` — ``n`` distinct draws from a space, seeded: draw ``k`` is a function
  of ``(seed, k)`` only, so the same seed gives the same list and the first ``n`` of ``n + 1``
  draws are the ``n`` draws. Infeasible genotypes (a space's ``constraints``), duplicates and
  ``exclude`` are skipped; with ``latency`` and ``reference`` only genotypes whose latency lies
  within ``tolerance · reference`` of the reference are kept (rejection sampling: uniform over
  the matching genotypes).
* :func:`latency_function` — the table latency of a genotype, from a supernet that prices derived
  networks (:class:`~lightning_nas.latency.protocols.DerivedLatency`) and a latency table.

Example:
    >>> from lightning_nas.methods.dpc.space import DPCSpace
    >>> space = DPCSpace(num_branches=2)
    >>> [g.branches[1] for g in sample_genotypes(space, 2, seed=0)]
    [(-1, 'sep_conv3x3', (21, 9)), (0, 'sep_conv3x3', (9, 15))]
    >>> sample_genotypes(space, 3, seed=0)[:2] == sample_genotypes(space, 2, seed=0)
    True
"""

from __future__ import annotations

import itertools
import math
import random
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.strategies.protocols import DiscreteSpace, MutableSpace

if TYPE_CHECKING:
    import optuna

    from lightning_nas.latency.table import LatencyTable

__all__ = [
    "ProductSpace",
    "cell_decisions",
    "cell_edges",
    "cell_params",
    "input_pairs",
    "latency_function",
    "random_space_of",
    "sample_genotypes",
]


def random_space_of(genotype: Genotype) -> DiscreteSpace:
    """The discrete space of genotypes shaped like ``genotype`` (its kind's ``random_space``).

    Args:
        genotype: Any genotype whose class sets ``random_space`` (an import path of a function
            ``random_space(genotype) -> DiscreteSpace``).

    Returns:
        The space; ``genotype`` itself is one of its points, up to a canonical ordering.

    Raises:
        ConfigError: If ``genotype`` is not a genotype, its kind declares no random space, or
            the function does not return a :class:`DiscreteSpace`.
    """
    from lightning_nas._config import import_object

    if not isinstance(genotype, Genotype):
        raise ConfigError(f"random_space_of: expected a Genotype, got {type(genotype).__name__}")
    path = type(genotype).random_space
    if path is None:
        raise ConfigError(
            f"random_space_of: genotype kind {genotype.kind!r} ({type(genotype).__name__}) "
            "declares no random_space; set its class attribute to a function "
            "'package.module.random_space' returning a DiscreteSpace"
        )
    space = import_object(path)(genotype)
    if not isinstance(space, DiscreteSpace):
        raise ConfigError(
            f"random_space_of: {path} returned {type(space).__name__}; expected a "
            "lightning_nas.strategies.DiscreteSpace"
        )
    return space


class ProductSpace(MutableSpace):
    """A discrete space in one-to-one correspondence with the product of its decisions.

    A subclass lists its decisions (:meth:`decisions`: name → choices, in suggestion order),
    maps one choice per decision to a genotype (:meth:`genotype`) and back (:meth:`params`),
    such that every genotype of the space has exactly one parameter set. :meth:`sample` makes
    one ``trial.suggest_categorical`` per decision (``trial.suggest_int`` for a decision whose
    choices are a ``range``, e.g. the index of a path in a counted set of paths), so a sampler
    drawing each decision uniformly and independently draws every genotype with probability
    ``1 / size()``. :meth:`mutate` changes one decision (with more than one choice) to another
    of its choices, drawn uniformly.
    """

    @abstractmethod
    def decisions(self) -> dict[str, Sequence[Any]]:
        """Every decision's name and choices (JSON-able values, or a ``range`` of integers)."""
        ...

    @abstractmethod
    def genotype(self, params: Mapping[str, Any]) -> Genotype:
        """The genotype of one choice per decision (the inverse of :meth:`params`)."""
        ...

    def sample(self, trial: optuna.Trial) -> Genotype:
        """The genotype of ``trial``'s suggestions: one per decision.

        Args:
            trial: An Optuna trial (or a ``FixedTrial``).

        Returns:
            The genotype.
        """
        params: dict[str, Any] = {}
        for name, choices in self.decisions().items():
            if isinstance(choices, range):
                params[name] = trial.suggest_int(name, choices.start, choices[-1])
            else:
                params[name] = trial.suggest_categorical(name, tuple(choices))
        return self.genotype(params)

    def size(self) -> int:
        """The number of distinct genotypes: the product of the numbers of choices."""
        return math.prod(len(choices) for choices in self.decisions().values())

    def genotypes(self) -> Iterator[Genotype]:
        """Every genotype of the space, once each (for small spaces: tests, exhaustive runs)."""
        decisions = self.decisions()
        for values in itertools.product(*decisions.values()):
            yield self.genotype(dict(zip(decisions, values)))

    def mutate(self, genotype: Genotype, rng: object) -> Genotype:
        """A neighbour of ``genotype``: one decision changed to another of its choices.

        The decision is drawn uniformly among those with more than one choice, then its new
        value uniformly among the other choices.

        Args:
            genotype: A genotype of the space.
            rng: A ``random.Random``.

        Returns:
            The mutated genotype.

        Raises:
            ConfigError: If ``genotype`` is not in the space, or the space has one genotype.
            TypeError: If ``rng`` is not a ``random.Random``.
        """
        if not isinstance(rng, random.Random):
            raise TypeError(
                f"{type(self).__name__}.mutate: rng must be a random.Random, got {rng!r}"
            )
        params = self.params(genotype)
        decisions = {k: v for k, v in self.decisions().items() if len(v) > 1}
        if not decisions:
            raise ConfigError(f"{type(self).__name__}: a space of one genotype has no neighbour")
        name = list(decisions)[rng.randrange(len(decisions))]
        others = [c for c in decisions[name] if c != params[name]]
        params[name] = others[rng.randrange(len(others))]
        return self.genotype(params)


def _infeasible(space: DiscreteSpace, genotype: Genotype) -> bool:
    from lightning_nas.strategies.study import ConstrainedSpace

    if not isinstance(space, ConstrainedSpace):
        return False
    return any(float(v) > 0 for v in space.constraints(genotype).values())


def sample_genotypes(
    space: DiscreteSpace,
    n: int,
    seed: int = 0,
    *,
    latency: Callable[[Genotype], float] | None = None,
    reference: float | None = None,
    tolerance: float = 0.1,
    max_draws: int = 10_000,
    exclude: Collection[Genotype] = (),
) -> list[Genotype]:
    """``n`` distinct random genotypes of ``space``, reproducible from ``seed``.

    Draw ``k`` is trial ``k`` of an in-memory Optuna study sampled by
    :class:`~lightning_nas.strategies.strategies.TrialSeededRandomSampler` (``seed``): a function
    of ``(seed, k)`` alone, uniform over each decision. Draws are kept in order, skipping those
    infeasible for a space with ``constraints(genotype)`` (any value > 0), repeats of a kept one
    and members of ``exclude``. So the same arguments give the same list, and ``n`` draws are
    the first ``n`` of ``n + 1``. With ``latency`` and ``reference``, a draw is kept only if
    ``|latency(g) - reference| <= tolerance * reference`` (latency-matched baselines).

    Args:
        space: The space to draw from (e.g. :func:`random_space_of` a genotype).
        n: How many genotypes.
        seed: Seed of the draws.
        latency: ``genotype -> latency`` (e.g. :func:`latency_function`); needs ``reference``.
        reference: The latency to match (e.g. the searched genotype's); needs ``latency``.
        tolerance: Relative half-width of the accepted latency band.
        max_draws: Draws at most before giving up.
        exclude: Genotypes never returned (e.g. the searched one).

    Returns:
        The genotypes, in draw order.

    Raises:
        ConfigError: On a bad argument, or if fewer than ``n`` genotypes were kept after
            ``max_draws`` draws (the message says how many matched and why the others were
            skipped).
    """
    import optuna

    from lightning_nas.strategies.strategies import TrialSeededRandomSampler

    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"sample_genotypes: n must be an integer >= 0, got {n!r}")
    if isinstance(max_draws, bool) or not isinstance(max_draws, int) or max_draws < 1:
        raise ConfigError(f"sample_genotypes: max_draws must be an integer >= 1, got {max_draws!r}")
    if not isinstance(space, DiscreteSpace):
        raise ConfigError(
            f"sample_genotypes: {type(space).__name__} is not a lightning_nas.strategies."
            "DiscreteSpace"
        )
    if (latency is None) != (reference is None):
        raise ConfigError(
            "sample_genotypes: latency and reference go together (got "
            f"latency={'set' if latency is not None else None}, reference={reference!r})"
        )
    if reference is not None and not (math.isfinite(reference) and reference > 0):
        raise ConfigError(f"sample_genotypes: reference must be a latency > 0, got {reference!r}")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"sample_genotypes: tolerance must be >= 0, got {tolerance!r}")

    excluded = set(exclude)
    kept: list[Genotype] = []
    seen: set[Genotype] = set()
    skipped = {"infeasible": 0, "duplicate": 0, "excluded": 0, "outside the latency band": 0}
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(sampler=TrialSeededRandomSampler(seed))
        draws = 0
        while len(kept) < n and draws < max_draws:
            trial = study.ask()
            genotype = space.sample(trial)
            study.tell(trial, 0.0)
            draws += 1
            if genotype in seen:
                skipped["duplicate"] += 1
            elif genotype in excluded:
                skipped["excluded"] += 1
            elif _infeasible(space, genotype):
                skipped["infeasible"] += 1
            elif latency is not None and abs(float(latency(genotype)) - reference) > (
                tolerance * reference
            ):
                skipped["outside the latency band"] += 1
            else:
                kept.append(genotype)
            seen.add(genotype)
    finally:
        optuna.logging.set_verbosity(level)
    if len(kept) < n:
        why = ", ".join(f"{v} {k}" for k, v in skipped.items() if v) or "nothing skipped"
        band = (
            f" within {tolerance:g}·{reference:g} of the reference latency"
            if reference is not None
            else ""
        )
        raise ConfigError(
            f"sample_genotypes: only {len(kept)} of {n} genotypes{band} matched after "
            f"{max_draws} draws (skipped: {why}); raise max_draws"
            + (" or widen tolerance" if reference is not None else " or ask for fewer")
        )
    return kept


def latency_function(
    space: object,
    table_path: str | Path | LatencyTable,
    input_size: tuple[int, int] | None = None,
) -> Callable[[Genotype], float]:
    """``genotype -> table latency (ms)`` of its derived network, priced by ``space``.

    Args:
        space: A supernet implementing
            :class:`~lightning_nas.latency.protocols.DerivedLatency`
            (``derived_latency(table, genotype, input_size)``), built with the macro settings
            the genotypes' networks use.
        table_path: The latency table file (``lightning-nas latency build``), or a loaded
            :class:`~lightning_nas.latency.table.LatencyTable`.
        input_size: Network input ``(H, W)`` (default: the table's).

    Returns:
        The function, for :func:`sample_genotypes`'s ``latency``.

    Raises:
        ConfigError: If ``space`` cannot price a derived network, or the table file is
            unusable (:class:`~lightning_nas.latency.table.LatencyTableError`).
    """
    from lightning_nas.latency.protocols import DerivedLatency
    from lightning_nas.latency.table import LatencyTable

    if not isinstance(space, DerivedLatency):
        raise ConfigError(
            f"latency_function: {type(space).__name__} has no derived_latency(table, genotype, "
            "input_size); use a latency-aware supernet of the genotypes' method"
        )
    table = table_path if isinstance(table_path, LatencyTable) else LatencyTable.load(table_path)
    size = None if input_size is None else tuple(input_size)

    def latency(genotype: Genotype) -> float:
        return float(space.derived_latency(table, genotype, size))

    return latency


# ------------------------------------------------------------- cells of two-input nodes
def input_pairs(node: int) -> tuple[str, ...]:
    """Choices of a cell node's two inputs: unordered distinct pairs ``"a,b"`` of ``0..node+1``.

    Inputs ``0`` and ``1`` are the cell's two inputs, ``2 + m`` is node ``m``.

    Example:
        >>> input_pairs(1)
        ('0,1', '0,2', '1,2')
    """
    return tuple(f"{a},{b}" for a, b in itertools.combinations(range(node + 2), 2))


def cell_decisions(prefix: str, nodes: int, ops: Sequence[str]) -> dict[str, Sequence[str]]:
    """The decisions of a cell of two-input nodes: ``<prefix><i>_inputs``, ``_op0``, ``_op1``.

    One categorical over the node's input pairs and one operation per edge, so every valid cell
    is one combination of choices: uniform draws are uniform over cells.
    """
    out: dict[str, Sequence[str]] = {}
    for i in range(nodes):
        out[f"{prefix}{i}_inputs"] = input_pairs(i)
        out[f"{prefix}{i}_op0"] = tuple(ops)
        out[f"{prefix}{i}_op1"] = tuple(ops)
    return out


def cell_edges(params: Mapping[str, Any], prefix: str, nodes: int) -> tuple[tuple[str, int], ...]:
    """The cell's ``(op, input)`` edges of :func:`cell_decisions` choices (sorted by input)."""
    edges: list[tuple[str, int]] = []
    for i in range(nodes):
        a, b = (int(v) for v in str(params[f"{prefix}{i}_inputs"]).split(","))
        edges += [(params[f"{prefix}{i}_op0"], a), (params[f"{prefix}{i}_op1"], b)]
    return tuple(edges)


def cell_params(
    edges: Sequence[tuple[str, int]], prefix: str, nodes: int, ops: Sequence[str], where: str
) -> dict[str, object]:
    """The :func:`cell_decisions` choices of ``edges`` (the inverse of :func:`cell_edges`).

    Raises:
        ConfigError: A node with the same input twice or an operation outside ``ops``; the
            message starts with ``where`` (e.g. ``"DartsCellSpace: normal node"``) and the node.
    """
    out: dict[str, object] = {}
    for i in range(nodes):
        (op0, a), (op1, b) = sorted(edges[2 * i : 2 * i + 2], key=lambda e: e[1])
        if a == b:
            raise ConfigError(f"{where} {i} takes input {a} twice; expected two distinct inputs")
        for op in (op0, op1):
            if op not in ops:
                raise ConfigError(f"{where} {i} uses {op!r}; expected one of " + ", ".join(ops))
        out[f"{prefix}{i}_inputs"] = f"{a},{b}"
        out[f"{prefix}{i}_op0"] = op0
        out[f"{prefix}{i}_op1"] = op1
    return out
