"""Random DARTS cells: the discrete space of derived normal + reduction cells (torch-free).

A derived DARTS cell gives every intermediate node ``i`` two edges from two *distinct* earlier
states (``0 .. i + 1``), each with one operation other than ``none`` (what
:func:`~lightning_nas.methods.darts.space.derive_darts_cell` keeps). :class:`DartsCellSpace`
draws node ``i``'s pair of inputs as **one** categorical over the ``C(i + 2, 2)`` unordered pairs
and one operation per edge, and stores the node's two edges sorted by input index. Each cell is
then in one-to-one correspondence with its decisions, so a uniform draw of every decision is a
uniform draw over the valid cells (per-edge draws of two inputs would give the same pair twice
as often as an ordered pair, and repeats).

Example:
    >>> import optuna
    >>> space = DartsCellSpace(steps=2, multiplier=2, primitives=("skip_connect", "sep_conv_3x3"))
    >>> space.size()
    2304
    >>> g = space.sample(optuna.trial.FixedTrial({
    ...     "normal_node0_inputs": "0,1", "normal_node0_op0": "skip_connect",
    ...     "normal_node0_op1": "sep_conv_3x3", "normal_node1_inputs": "1,2",
    ...     "normal_node1_op0": "skip_connect", "normal_node1_op1": "skip_connect",
    ...     "reduce_node0_inputs": "0,1", "reduce_node0_op0": "sep_conv_3x3",
    ...     "reduce_node0_op1": "sep_conv_3x3", "reduce_node1_inputs": "0,2",
    ...     "reduce_node1_op0": "skip_connect", "reduce_node1_op1": "sep_conv_3x3"}))
    >>> g.normal, g.normal_concat
    ((('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 1), ('skip_connect', 2)), (2, 3))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES, DartsGenotype
from lightning_nas.strategies.sampling import ProductSpace, cell_decisions, cell_edges, cell_params

__all__ = ["DARTS_CELL_OPS", "DartsCellSpace", "random_space"]

DARTS_CELL_OPS: tuple[str, ...] = tuple(p for p in DARTS_PRIMITIVES if p != "none")
"""The operations of a derived cell: :data:`DARTS_PRIMITIVES` but ``none``."""

_CELLS = ("normal", "reduce")


class DartsCellSpace(ProductSpace):
    """Derived DARTS cell pairs (normal + reduction) of a fixed shape, for discrete searches.

    Per cell and intermediate node ``i``: ``<cell>_node<i>_inputs`` (one of
    :func:`~lightning_nas.strategies.sampling.input_pairs`), ``<cell>_node<i>_op0`` (the
    operation on the edge from the smaller input) and ``<cell>_node<i>_op1`` (the larger). The
    genotype lists node ``i``'s edges in that order; ``params`` of a genotype listing them
    otherwise (DARTS writes the stronger edge first) gives the same cell, which ``sample``
    returns with its edges sorted.

    Args:
        steps: Intermediate nodes of the normal cell (DARTS: 4).
        multiplier: The last ``multiplier`` nodes are concatenated into each cell's output
            (unless ``normal_concat`` / ``reduce_concat`` say otherwise).
        primitives: Operation choices of every edge (default: the seven of a derived cell).
        reduce_steps: Intermediate nodes of the reduction cell (default: ``steps``).
        normal_concat: State indices (``>= 2``) concatenated into the normal cell's output.
        reduce_concat: Those of the reduction cell.

    Raises:
        ConfigError: On a bad size, an unknown or repeated operation, or a bad concat.
    """

    def __init__(
        self,
        steps: int = 4,
        multiplier: int = 4,
        primitives: Sequence[str] = DARTS_CELL_OPS,
        reduce_steps: int | None = None,
        normal_concat: Sequence[int] | None = None,
        reduce_concat: Sequence[int] | None = None,
    ) -> None:
        reduce_steps = steps if reduce_steps is None else reduce_steps
        check_min_ints(
            "DartsCellSpace",
            (("steps", steps, 1), ("reduce_steps", reduce_steps, 1), ("multiplier", multiplier, 1)),
        )
        primitives = tuple(primitives)
        bad = [p for p in primitives if p not in DARTS_CELL_OPS]
        if not primitives or bad or len(set(primitives)) != len(primitives):
            raise ConfigError(
                f"DartsCellSpace.primitives: got {list(primitives)}; expected distinct ops among "
                + ", ".join(DARTS_CELL_OPS)
            )
        self.steps = {"normal": steps, "reduce": reduce_steps}
        self.multiplier = multiplier
        self.primitives = primitives
        self.concat: dict[str, tuple[int, ...]] = {}
        for cell, given in (("normal", normal_concat), ("reduce", reduce_concat)):
            n = self.steps[cell]
            if given is None:
                if multiplier > n:
                    raise ConfigError(
                        f"DartsCellSpace: multiplier ({multiplier}) must be <= the {cell} cell's "
                        f"steps ({n})"
                    )
                given = range(2 + n - multiplier, 2 + n)
            concat = tuple(given)
            if (
                not concat
                or len(set(concat)) != len(concat)
                or any(isinstance(c, bool) or not isinstance(c, int) for c in concat)
                or not all(2 <= c < n + 2 for c in concat)
            ):
                raise ConfigError(
                    f"DartsCellSpace.{cell}_concat: got {list(concat)}; expected distinct node "
                    f"indices 2..{n + 1}"
                )
            self.concat[cell] = concat

    def decisions(self) -> dict[str, Sequence[Any]]:
        """Per cell and node: its input pair and the operation of each of its two edges."""
        out: dict[str, Sequence[Any]] = {}
        for cell in _CELLS:
            out.update(cell_decisions(f"{cell}_node", self.steps[cell], self.primitives))
        return out

    def genotype(self, params: Mapping[str, Any]) -> DartsGenotype:
        """The cell pair of one choice per decision (each node's edges sorted by input)."""
        genes = {cell: cell_edges(params, f"{cell}_node", self.steps[cell]) for cell in _CELLS}
        return DartsGenotype(
            normal=genes["normal"],
            normal_concat=self.concat["normal"],
            reduce=genes["reduce"],
            reduce_concat=self.concat["reduce"],
        )

    def params(self, genotype: DartsGenotype) -> dict[str, object]:
        """The decisions of ``genotype`` (its nodes' edges taken in input order).

        Raises:
            ConfigError: If ``genotype`` is not a DARTS genotype of this shape, a node takes
                one input twice, or an operation is not among ``primitives``.
        """
        if not isinstance(genotype, DartsGenotype):
            raise ConfigError(
                f"DartsCellSpace: expected a DartsGenotype, got {type(genotype).__name__}"
            )
        out: dict[str, object] = {}
        for cell in _CELLS:
            gene = getattr(genotype, cell)
            concat = getattr(genotype, f"{cell}_concat")
            if len(gene) != 2 * self.steps[cell] or concat != self.concat[cell]:
                raise ConfigError(
                    f"DartsCellSpace: the {cell} cell has {len(gene) // 2} nodes and concat "
                    f"{list(concat)}; expected {self.steps[cell]} and {list(self.concat[cell])}"
                )
            where = f"DartsCellSpace: {cell} node"
            out.update(cell_params(gene, f"{cell}_node", self.steps[cell], self.primitives, where))
        return out

    def __repr__(self) -> str:
        return (
            f"DartsCellSpace(steps={self.steps['normal']}, reduce_steps={self.steps['reduce']}, "
            f"normal_concat={list(self.concat['normal'])}, "
            f"reduce_concat={list(self.concat['reduce'])}, primitives={list(self.primitives)})"
        )


def random_space(genotype: DartsGenotype) -> DartsCellSpace:
    """The cells shaped like ``genotype``: its nodes per cell and concats, every derived op.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> random_space(load("experiments/genotypes/darts_v2.yaml")).size()
        1076746950455072400
    """
    if not isinstance(genotype, DartsGenotype):
        raise ConfigError(f"random_space: expected a DartsGenotype, got {type(genotype).__name__}")
    return DartsCellSpace(
        steps=len(genotype.normal) // 2,
        reduce_steps=len(genotype.reduce) // 2,
        normal_concat=genotype.normal_concat,
        reduce_concat=genotype.reduce_concat,
    )
