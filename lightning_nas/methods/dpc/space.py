"""DPC's discrete search space, sampled through Optuna trials (torch-free).

Implements :class:`~lightning_nas.strategies.protocols.DiscreteSpace` and
:class:`~lightning_nas.strategies.protocols.MutableSpace`: two categorical decisions per branch
``i``, ``b{i}_input`` (``-1`` = the backbone feature, or an earlier branch ``0..i-1``) and
``b{i}_op`` (one of the 81 operations, as a stable string, :data:`OP_CHOICES`).
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.methods.dpc.genotype import NUM_BRANCHES, OPS, DPCGenotype
from lightning_nas.strategies.protocols import MutableSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["OP_CHOICES", "DPCSpace", "op_choice", "parse_op_choice"]


def op_choice(op: str, a: int, b: int) -> str:
    """The trial-parameter string of an operation.

    Args:
        op: ``conv1x1``, ``sep_conv3x3`` or ``pyramid_pooling``.
        a: First rate / grid size (1 for ``conv1x1``).
        b: Second rate / grid size (1 for ``conv1x1``).

    Returns:
        ``"conv1x1"``, ``"sep3x3_r{a}x{b}"`` or ``"pool_g{a}x{b}"``.

    Raises:
        ValueError: If ``op`` is unknown.

    Example:
        >>> op_choice("sep_conv3x3", 1, 6), op_choice("pyramid_pooling", 2, 4)
        ('sep3x3_r1x6', 'pool_g2x4')
    """
    if op == "conv1x1":
        return "conv1x1"
    if op == "sep_conv3x3":
        return f"sep3x3_r{a}x{b}"
    if op == "pyramid_pooling":
        return f"pool_g{a}x{b}"
    raise ValueError(f"op_choice: unknown op {op!r}")


OP_CHOICES: tuple[str, ...] = tuple(op_choice(*op) for op in OPS)
"""The 81 values of a ``b{i}_op`` parameter, in the order of :data:`~.genotype.OPS`."""

_DECODE: dict[str, tuple[str, tuple[int, int]]] = {
    op_choice(op, a, b): (op, (a, b)) for op, a, b in OPS
}


def parse_op_choice(choice: str) -> tuple[str, tuple[int, int]]:
    """The ``(op, (a, b))`` of a ``b{i}_op`` value (inverse of :func:`op_choice`).

    Raises:
        ValueError: If ``choice`` is not one of :data:`OP_CHOICES`.

    Example:
        >>> parse_op_choice("pool_g2x4")
        ('pyramid_pooling', (2, 4))
    """
    if choice not in _DECODE:
        raise ValueError(f"parse_op_choice: {choice!r} is not a DPC op choice")
    return _DECODE[choice]


class DPCSpace(MutableSpace):
    """The DPC space of ``num_branches`` branches (Chen et al., §3.1), for discrete searches.

    ``sample(trial)`` makes exactly two ``trial.suggest_categorical`` calls per branch ``i``:
    ``b{i}_input`` with choices ``[-1, 0, ..., i-1]`` (branch 0: ``[-1]``) and ``b{i}_op`` with
    :data:`OP_CHOICES`. Its size is ``B! · 81^B`` (418,414,128,120 for ``B = 5``).

    Args:
        num_branches: B.

    Raises:
        ConfigError: If ``num_branches`` is not a positive integer.

    Example:
        >>> import random
        >>> space = DPCSpace()
        >>> space.size()
        418414128120
        >>> from lightning_nas.genotypes import load
        >>> g = load("experiments/genotypes/dpc_cityscapes.yaml")
        >>> space.params(g)["b1_op"], space.params(g)["b1_input"]
        ('sep3x3_r18x15', 0)
        >>> space.mutate(g, random.Random(0)) != g
        True
    """

    def __init__(self, num_branches: int = NUM_BRANCHES) -> None:
        check_min_ints("DPCSpace", (("num_branches", num_branches, 1),))
        self.num_branches = num_branches

    @staticmethod
    def input_choices(i: int) -> list[int]:
        """The values of ``b{i}_input``: ``-1`` (the backbone feature) and ``0..i-1``."""
        return list(range(-1, i))

    def sample(self, trial: optuna.Trial) -> DPCGenotype:
        """The genotype of ``trial``'s suggested parameters (two suggestions per branch).

        Args:
            trial: An Optuna trial.

        Returns:
            The genotype.
        """
        branches = []
        for i in range(self.num_branches):
            inp = trial.suggest_categorical(f"b{i}_input", self.input_choices(i))
            op, args = parse_op_choice(trial.suggest_categorical(f"b{i}_op", OP_CHOICES))
            branches.append((inp, op, args))
        return DPCGenotype(branches=tuple(branches))

    def params(self, genotype: DPCGenotype) -> dict[str, object]:
        """The trial parameters that :meth:`sample` maps to ``genotype``.

        Args:
            genotype: A genotype of ``num_branches`` branches.

        Returns:
            ``{"b{i}_input": int, "b{i}_op": str}`` for every branch.

        Raises:
            ConfigError: If ``genotype`` is not a DPC genotype of this space's size.
        """
        self._check(genotype)
        out: dict[str, object] = {}
        for i, (inp, op, (a, b)) in enumerate(genotype.branches):
            out[f"b{i}_input"] = inp
            out[f"b{i}_op"] = op_choice(op, a, b)
        return out

    def mutate(self, genotype: DPCGenotype, rng: object) -> DPCGenotype:
        """A neighbour of ``genotype``: one decision changed to another valid value.

        The decision is drawn uniformly among those with more than one choice (every op, and
        the input of branches ``1..B-1``), then a different value uniformly among its choices.

        Args:
            genotype: A genotype of ``num_branches`` branches.
            rng: A ``random.Random``.

        Returns:
            The mutated genotype.

        Raises:
            ConfigError: If ``genotype`` is not a DPC genotype of this space's size.
            TypeError: If ``rng`` is not a ``random.Random``.
        """
        self._check(genotype)
        if not isinstance(rng, random.Random):
            raise TypeError(f"DPCSpace.mutate: rng must be a random.Random, got {rng!r}")
        decisions = [(i, "op") for i in range(self.num_branches)]
        decisions += [(i, "input") for i in range(1, self.num_branches)]
        i, what = decisions[rng.randrange(len(decisions))]
        branches = [list(branch) for branch in genotype.branches]
        if what == "input":
            others = [c for c in self.input_choices(i) if c != branches[i][0]]
            branches[i][0] = others[rng.randrange(len(others))]
        else:
            current = op_choice(branches[i][1], *branches[i][2])
            others_ops = [c for c in OP_CHOICES if c != current]
            branches[i][1], branches[i][2] = parse_op_choice(
                others_ops[rng.randrange(len(others_ops))]
            )
        return DPCGenotype(branches=tuple(tuple(branch) for branch in branches))

    def size(self) -> int:
        """The number of distinct genotypes: ``B! · 81^B``."""
        return math.factorial(self.num_branches) * len(OP_CHOICES) ** self.num_branches

    def _check(self, genotype: DPCGenotype) -> None:
        if not isinstance(genotype, DPCGenotype):
            raise ConfigError(f"DPCSpace: expected a DPCGenotype, got {type(genotype).__name__}")
        if genotype.num_branches != self.num_branches:
            raise ConfigError(
                f"DPCSpace: the genotype has {genotype.num_branches} branches; "
                f"expected {self.num_branches}"
            )
