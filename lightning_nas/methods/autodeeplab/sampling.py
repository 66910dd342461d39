"""Random Auto-DeepLab architectures: a derived cell and a network-level path (torch-free).

:class:`AutoDeepLabDiscreteSpace` draws the cell as DARTS' derived cells are drawn (per block one
categorical over the unordered pairs of distinct inputs, one operation per edge, edges stored
sorted by input) and the path as **one** integer: the index of the path among all valid paths.

Why one integer: a path is valid when its first level is 0 or 1, every next level differs by at
most one and all lie in ``0 .. len(strides) - 1``. Drawing it layer by layer (a uniform move
among the two or three allowed) favours paths that run along the boundary levels, which have
fewer moves to split their probability over: with 4 levels and 12 layers, of the 75,025 valid
paths the most likely one would be drawn 18 times more often than uniformly and 86 times more
often than the least likely one. Counting the valid completions of every
prefix by dynamic programming (:func:`count_paths`) gives the number ``N`` of valid paths and a
bijection between ``0 .. N - 1`` and the paths in lexicographic order (:func:`unrank_path`,
:func:`rank_path`); a uniform index is a uniform path.

Example:
    >>> count_paths(layers=3, levels=4)
    13
    >>> unrank_path(0, layers=3, levels=4), unrank_path(12, layers=3, levels=4)
    ((0, 0, 0), (1, 2, 3))
    >>> rank_path((1, 2, 3), levels=4)
    12
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES, AutoDeepLabGenotype
from lightning_nas.strategies.sampling import ProductSpace, cell_decisions, cell_edges, cell_params

__all__ = [
    "AUTODEEPLAB_CELL_OPS",
    "AutoDeepLabDiscreteSpace",
    "count_paths",
    "random_space",
    "rank_path",
    "unrank_path",
]

AUTODEEPLAB_CELL_OPS: tuple[str, ...] = tuple(p for p in AUTODEEPLAB_PRIMITIVES if p != "none")
"""The operations of a derived cell: :data:`AUTODEEPLAB_PRIMITIVES` but ``none``."""

_STARTS = (0, 1)  # the stem is at level 0: the first layer is at level 0 or 1


@cache
def _completions(layers: int, levels: int) -> tuple[tuple[int, ...], ...]:
    """``[k][v]``: the valid levels ``p_k .. p_{layers-1}`` given ``p_k = v``."""
    table = [[0] * levels for _ in range(layers)]
    table[-1] = [1] * levels
    for k in range(layers - 2, -1, -1):
        for v in range(levels):
            table[k][v] = sum(table[k + 1][u] for u in (v - 1, v, v + 1) if 0 <= u < levels)
    return tuple(tuple(row) for row in table)


def _moves(previous: int | None, levels: int) -> list[int]:
    """The levels allowed after ``previous`` (``None``: the first layer), ascending."""
    nexts = _STARTS if previous is None else (previous - 1, previous, previous + 1)
    return [v for v in nexts if 0 <= v < levels]


def _check(layers: int, levels: int) -> None:
    check_min_ints("Auto-DeepLab paths", (("layers", layers, 1), ("levels", levels, 1)))


def count_paths(layers: int, levels: int) -> int:
    """The number of valid paths of ``layers`` layers over ``levels`` levels.

    Args:
        layers: Path length L.
        levels: Number of levels (``len(strides)``).

    Returns:
        The count.
    """
    _check(layers, levels)
    return sum(_completions(layers, levels)[0][v] for v in _moves(None, levels))


def unrank_path(index: int, layers: int, levels: int) -> tuple[int, ...]:
    """The ``index``-th valid path (0-based, lexicographic order of the level sequences).

    Raises:
        ConfigError: If ``index`` is not in ``0 .. count_paths(layers, levels) - 1``.
    """
    total = count_paths(layers, levels)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < total:
        raise ConfigError(f"unrank_path: index must be in 0..{total - 1}, got {index!r}")
    table = _completions(layers, levels)
    path: list[int] = []
    for k in range(layers):
        for v in _moves(path[-1] if path else None, levels):
            if index < table[k][v]:
                path.append(v)
                break
            index -= table[k][v]
    return tuple(path)


def rank_path(path: Sequence[int], levels: int) -> int:
    """The index of ``path`` among the valid paths of its length (inverse of :func:`unrank_path`).

    Raises:
        ConfigError: If ``path`` is not a valid path over ``levels`` levels.
    """
    layers = len(path)
    _check(layers, levels)
    table = _completions(layers, levels)
    index = 0
    previous: int | None = None
    for k, level in enumerate(path):
        allowed = _moves(previous, levels)
        if level not in allowed:
            raise ConfigError(
                f"rank_path: level {level!r} at layer {k} (after {previous}); expected one of "
                f"{allowed}"
            )
        index += sum(table[k][v] for v in allowed if v < level)
        previous = level
    return index


class AutoDeepLabDiscreteSpace(ProductSpace):
    """Auto-DeepLab architectures of a fixed shape (blocks, layers, strides), for discrete search.

    Decisions: per block ``b``, ``block<b>_inputs`` (an unordered pair ``"j,k"`` of distinct
    inputs, 0 = ``h[l-2]``, 1 = ``h[l-1]``, ``2 + m`` = block ``m``), ``block<b>_op0`` and
    ``block<b>_op1`` (the operations on the smaller and the larger input); and ``path``, an
    integer in ``0 .. N - 1``, the index of the network-level path among the ``N`` valid ones
    (:func:`unrank_path`). Uniform decisions give uniform architectures (module docstring).

    Args:
        blocks: Blocks B of the cell (the paper: 5).
        layers: Layers L of the path (the paper: 12).
        strides: The output stride of each level.
        primitives: Operation choices of every edge (default: the seven of a derived cell).

    Raises:
        ConfigError: On a bad size, bad strides, or unknown or repeated operations.

    Example:
        >>> import optuna
        >>> space = AutoDeepLabDiscreteSpace(blocks=1, layers=12, primitives=("skip_connect",))
        >>> space.size()
        75025
        >>> space.sample(optuna.trial.FixedTrial({"block0_inputs": "0,1",
        ...     "block0_op0": "skip_connect", "block0_op1": "skip_connect", "path": 75024})).path
        (1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3)
    """

    def __init__(
        self,
        blocks: int = 5,
        layers: int = 12,
        strides: Sequence[int] = (4, 8, 16, 32),
        primitives: Sequence[str] = AUTODEEPLAB_CELL_OPS,
    ) -> None:
        check_min_ints("AutoDeepLabDiscreteSpace", (("blocks", blocks, 1), ("layers", layers, 1)))
        strides = tuple(strides)
        if (
            not strides
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in strides)
            or any(b != 2 * a for a, b in zip(strides, strides[1:]))
        ):
            raise ConfigError(
                f"AutoDeepLabDiscreteSpace.strides: got {list(strides)}; expected positive "
                "integers, each twice the last"
            )
        primitives = tuple(primitives)
        bad = [p for p in primitives if p not in AUTODEEPLAB_CELL_OPS]
        if not primitives or bad or len(set(primitives)) != len(primitives):
            raise ConfigError(
                f"AutoDeepLabDiscreteSpace.primitives: got {list(primitives)}; expected distinct "
                "ops among " + ", ".join(AUTODEEPLAB_CELL_OPS)
            )
        self.blocks = blocks
        self.layers = layers
        self.strides = strides
        self.primitives = primitives

    @property
    def num_paths(self) -> int:
        """N, the number of valid network-level paths."""
        return count_paths(self.layers, len(self.strides))

    def decisions(self) -> dict[str, Sequence[Any]]:
        """Per block its input pair and two operations; then the path index."""
        out: dict[str, Sequence[Any]] = {}
        out.update(cell_decisions("block", self.blocks, self.primitives))
        out["path"] = range(self.num_paths)
        return out

    def genotype(self, params: Mapping[str, Any]) -> AutoDeepLabGenotype:
        """The architecture of one choice per decision (each block's edges sorted by input)."""
        cell = cell_edges(params, "block", self.blocks)
        path = unrank_path(int(params["path"]), self.layers, len(self.strides))
        return AutoDeepLabGenotype(cell=cell, path=path, strides=self.strides)

    def params(self, genotype: AutoDeepLabGenotype) -> dict[str, object]:
        """The decisions of ``genotype`` (its blocks' edges taken in input order).

        Raises:
            ConfigError: If ``genotype`` is not an Auto-DeepLab genotype of this shape, a block
                takes one input twice, or an operation is not among ``primitives``.
        """
        if not isinstance(genotype, AutoDeepLabGenotype):
            raise ConfigError(
                "AutoDeepLabDiscreteSpace: expected an AutoDeepLabGenotype, got "
                f"{type(genotype).__name__}"
            )
        shape = (genotype.num_blocks, len(genotype.path), genotype.strides)
        if shape != (self.blocks, self.layers, self.strides):
            raise ConfigError(
                f"AutoDeepLabDiscreteSpace: (blocks, layers, strides) = {shape}; expected "
                f"{(self.blocks, self.layers, self.strides)}"
            )
        where = "AutoDeepLabDiscreteSpace: block"
        out = cell_params(genotype.cell, "block", self.blocks, self.primitives, where)
        out["path"] = rank_path(genotype.path, len(self.strides))
        return out

    def __repr__(self) -> str:
        return (
            f"AutoDeepLabDiscreteSpace(blocks={self.blocks}, layers={self.layers}, "
            f"strides={list(self.strides)}, primitives={list(self.primitives)})"
        )


def random_space(genotype: AutoDeepLabGenotype) -> AutoDeepLabDiscreteSpace:
    """The architectures shaped like ``genotype``: its blocks, layers and strides, every op.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> random_space(load("experiments/genotypes/autodeeplab_cityscapes.yaml")).num_paths
        75025
    """
    if not isinstance(genotype, AutoDeepLabGenotype):
        raise ConfigError(
            f"random_space: expected an AutoDeepLabGenotype, got {type(genotype).__name__}"
        )
    return AutoDeepLabDiscreteSpace(
        blocks=genotype.num_blocks, layers=len(genotype.path), strides=genotype.strides
    )
