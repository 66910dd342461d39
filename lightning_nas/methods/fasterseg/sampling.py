"""Random FasterSeg architectures: branches of cells with operators, widths and paths (torch-free).

:class:`FasterSegDiscreteSpace` has a fixed number of branches, cells per branch, final scale
per branch (``lasts``) and stem/head width, and draws per branch:

* its path as **one** categorical over the cells that downsample: a branch of ``n`` cells ending
  at scale ``last`` starts at 1/8 and moves down once after each of ``last`` of its first
  ``n - 1`` cells, so its valid paths are the ``C(n - 1, last)`` sets of such cells, each one
  choice (``"3,7"``; ``"none"`` for a branch ending at 1/8). Per-cell "down or not" decisions
  would mostly end at another scale (or past 1/32) and need rejection; one choice among the
  sets is uniform over the valid paths as it is;
* per cell its operator (:data:`FASTERSEG_PRIMITIVES`) and, for every cell but the last, its
  output width in twelfths (the supernet's width choices, ``{4, 6, 8, 10, 12}``).

Every combination is a valid genotype (distinct ``lasts`` make distinct final scales) and no two
give the same one, so uniform decisions are uniform over the genotypes of that shape. Branches
share their leading cells only where their draws agree
(:func:`~lightning_nas.methods.fasterseg.network.fasterseg_plan`). The release's derivation
never keeps a ``skip`` (it removes or replaces it); ``ops`` can leave it out.

Example:
    >>> space = FasterSegDiscreteSpace(cells=(4,), lasts=(1,), widths=(6, 12))
    >>> space.decisions()["b0_downs"], space.size()
    (('0', '1', '2'), 15000)
    >>> g = next(space.genotypes())
    >>> g.paths, g.widths
    (((0, 1, 1, 1),), ((6, 6, 6),))
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.methods.fasterseg.genotype import FASTERSEG_PRIMITIVES, FasterSegGenotype
from lightning_nas.strategies.sampling import ProductSpace

__all__ = ["DEFAULT_WIDTHS", "FasterSegDiscreteSpace", "down_choices", "random_space"]

DEFAULT_WIDTHS: tuple[int, ...] = (4, 6, 8, 10, 12)
"""The supernet's width choices, in twelfths of full width (``FasterSegSpace.widths``)."""

_NO_DOWN = "none"


def down_choices(cells: int, last: int) -> tuple[str, ...]:
    """The choices of a branch's downsampling cells: ``last`` of cells ``0 .. cells - 2``.

    Example:
        >>> down_choices(4, 2), down_choices(3, 0)
        (('0,1', '0,2', '1,2'), ('none',))
    """
    combos = itertools.combinations(range(cells - 1), last)
    return tuple(",".join(map(str, c)) or _NO_DOWN for c in combos)


def _path(downs: str, cells: int) -> tuple[int, ...]:
    down = set() if downs == _NO_DOWN else {int(c) for c in downs.split(",")}
    path = [0]
    for c in range(cells - 1):
        path.append(path[-1] + (c in down))
    return tuple(path)


class FasterSegDiscreteSpace(ProductSpace):
    """FasterSeg architectures of a fixed shape (branches, cells, final scales), for search.

    Decisions per branch ``b``: ``b<b>_downs`` (:func:`down_choices`), ``b<b>_cell<c>_op`` for
    every cell and ``b<b>_cell<c>_width`` for every cell but the last.

    Args:
        cells: Cells per branch (the supernet's layers: 16, before skip pruning).
        lasts: The scale each branch ends at (0, 1, 2 = 1/8, 1/16, 1/32), distinct.
        widths: Width choices in twelfths of full width.
        stem_head_width: Stem and head widths in twelfths (the student's: 8, 8).
        ops: Operator choices (default: all five).

    Raises:
        ConfigError: On a bad shape, width or operator list.
    """

    def __init__(
        self,
        cells: Sequence[int] = (16, 16),
        lasts: Sequence[int] = (2, 1),
        widths: Sequence[int] = DEFAULT_WIDTHS,
        stem_head_width: tuple[int, int] = (8, 8),
        ops: Sequence[str] = FASTERSEG_PRIMITIVES,
    ) -> None:
        cells, lasts, widths, ops = tuple(cells), tuple(lasts), tuple(widths), tuple(ops)
        stem_head_width = tuple(stem_head_width)

        def ints(values: tuple, low: int, high: int) -> bool:
            return all(
                not isinstance(v, bool) and isinstance(v, int) and low <= v <= high for v in values
            )

        if not 1 <= len(lasts) <= 3 or len(set(lasts)) != len(lasts) or not ints(lasts, 0, 2):
            raise ConfigError(
                f"FasterSegDiscreteSpace.lasts: got {list(lasts)}; expected 1 to 3 distinct "
                "scale indices 0..2"
            )
        if len(cells) != len(lasts):
            raise ConfigError(
                f"FasterSegDiscreteSpace.cells: got {len(cells)} branches; expected "
                f"{len(lasts)} (as lasts)"
            )
        for b, (n, last) in enumerate(zip(cells, lasts)):
            check_min_ints("FasterSegDiscreteSpace", ((f"cells[{b}]", n, last + 1),))
        if not widths or len(set(widths)) != len(widths) or not ints(widths, 1, 12):
            raise ConfigError(
                f"FasterSegDiscreteSpace.widths: got {list(widths)}; expected distinct integers "
                "1..12 (twelfths of full width)"
            )
        if len(stem_head_width) != 2 or not ints(stem_head_width, 1, 12):
            raise ConfigError(
                f"FasterSegDiscreteSpace.stem_head_width: got {list(stem_head_width)}; expected "
                "[stem, head], integers 1..12"
            )
        bad = [o for o in ops if o not in FASTERSEG_PRIMITIVES]
        if not ops or bad or len(set(ops)) != len(ops):
            raise ConfigError(
                f"FasterSegDiscreteSpace.ops: got {list(ops)}; expected distinct operators among "
                + ", ".join(FASTERSEG_PRIMITIVES)
            )
        self.cells = cells
        self.lasts = lasts
        self.widths = tuple(sorted(widths))
        self.stem_head_width = stem_head_width
        self.ops = ops

    def decisions(self) -> dict[str, Sequence[Any]]:
        """Per branch: its downsampling cells, then per cell its operator and output width."""
        out: dict[str, Sequence[Any]] = {}
        for b, (n, last) in enumerate(zip(self.cells, self.lasts)):
            out[f"b{b}_downs"] = down_choices(n, last)
            for c in range(n):
                out[f"b{b}_cell{c}_op"] = self.ops
                if c < n - 1:
                    out[f"b{b}_cell{c}_width"] = self.widths
        return out

    def genotype(self, params: Mapping[str, Any]) -> FasterSegGenotype:
        """The architecture of one choice per decision."""
        ops, paths, widths = [], [], []
        for b, n in enumerate(self.cells):
            paths.append(_path(str(params[f"b{b}_downs"]), n))
            ops.append(tuple(params[f"b{b}_cell{c}_op"] for c in range(n)))
            widths.append(tuple(int(params[f"b{b}_cell{c}_width"]) for c in range(n - 1)))
        return FasterSegGenotype(
            ops=tuple(ops),
            paths=tuple(paths),
            widths=tuple(widths),
            stem_head_width=self.stem_head_width,
        )

    def params(self, genotype: FasterSegGenotype) -> dict[str, object]:
        """The decisions of ``genotype``.

        Raises:
            ConfigError: If ``genotype`` is not a FasterSeg genotype of this shape, or uses an
                operator or width not among the choices.
        """
        if not isinstance(genotype, FasterSegGenotype):
            raise ConfigError(
                "FasterSegDiscreteSpace: expected a FasterSegGenotype, got "
                f"{type(genotype).__name__}"
            )
        shape = (
            tuple(len(p) for p in genotype.paths),
            genotype.lasts,
            tuple(genotype.stem_head_width),
        )
        if shape != (self.cells, self.lasts, self.stem_head_width):
            raise ConfigError(
                f"FasterSegDiscreteSpace: (cells, lasts, stem_head_width) = {shape}; expected "
                f"{(self.cells, self.lasts, self.stem_head_width)}"
            )
        out: dict[str, object] = {}
        for b, path in enumerate(genotype.paths):
            downs = [str(c) for c in range(len(path) - 1) if path[c + 1] > path[c]]
            out[f"b{b}_downs"] = ",".join(downs) or _NO_DOWN
            for c, op in enumerate(genotype.ops[b]):
                if op not in self.ops:
                    raise ConfigError(
                        f"FasterSegDiscreteSpace: branch {b} cell {c} uses {op!r}; expected one "
                        f"of {', '.join(self.ops)}"
                    )
                out[f"b{b}_cell{c}_op"] = op
            for c, width in enumerate(genotype.widths[b]):
                if width not in self.widths:
                    raise ConfigError(
                        f"FasterSegDiscreteSpace: branch {b} cell {c} has width {width}/12; "
                        f"expected one of {list(self.widths)}"
                    )
                out[f"b{b}_cell{c}_width"] = width
        return out

    def __repr__(self) -> str:
        return (
            f"FasterSegDiscreteSpace(cells={list(self.cells)}, lasts={list(self.lasts)}, "
            f"widths={list(self.widths)}, stem_head_width={list(self.stem_head_width)}, "
            f"ops={list(self.ops)})"
        )


def random_space(genotype: FasterSegGenotype) -> FasterSegDiscreteSpace:
    """The architectures shaped like ``genotype``: its branches, cells, final scales and stem/head.

    Widths: the supernet's choices (:data:`DEFAULT_WIDTHS`, plus any other width ``genotype``
    uses); a teacher-like genotype (every width and the stem/head at 12/12, the teacher's fixed
    full width) keeps full width. Every operator.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> space = random_space(load("experiments/genotypes/fasterseg_cityscapes.yaml"))
        >>> space.cells, space.lasts, space.widths
        ((10, 9), (2, 1), (4, 6, 8, 10, 12))
        >>> random_space(load("experiments/genotypes/fasterseg_cityscapes_teacher.yaml")).widths
        (12,)
    """
    if not isinstance(genotype, FasterSegGenotype):
        raise ConfigError(
            f"random_space: expected a FasterSegGenotype, got {type(genotype).__name__}"
        )
    used = {w for branch in genotype.widths for w in branch}
    teacher = used <= {12} and tuple(genotype.stem_head_width) == (12, 12)
    widths = (12,) if teacher else tuple(sorted(set(DEFAULT_WIDTHS) | used))
    return FasterSegDiscreteSpace(
        cells=tuple(len(p) for p in genotype.paths),
        lasts=genotype.lasts,
        widths=widths,
        stem_head_width=tuple(genotype.stem_head_width),
    )
