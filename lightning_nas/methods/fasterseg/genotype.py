"""FasterSeg's genotype: 1 to 3 branches of cells (torch-free, validated, versioned)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lightning_nas.genotypes import Genotype, field_error, type_name, value_repr

__all__ = ["FASTERSEG_PRIMITIVES", "FasterSegGenotype"]

FASTERSEG_PRIMITIVES: tuple[str, ...] = ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")
"""FasterSeg's five operators, in the column order of the released α tensors."""


_FS_MAX_BRANCHES = 3
_FS_SCALES = (8, 16, 32)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class FasterSegGenotype(Genotype):
    """A FasterSeg architecture: 1 to 3 branches of cells sharing a stem and a head.

    Branch ``b`` is a chain of cells; cell ``l`` runs operator ``ops[b][l]`` (one of
    :data:`FASTERSEG_PRIMITIVES`) at scale index ``paths[b][l]``
    (0, 1, 2 = output stride 8, 16, 32; the path starts at 0 and moves down by at most one scale
    per cell). Cell ``l`` downsamples (stride 2) iff ``paths[b][l + 1] == paths[b][l] + 1``; the
    last cell never does, so the branch ends at scale ``paths[b][-1]`` (its "last"; the branches
    end at distinct scales). ``widths[b][l]`` is the output width of cell ``l`` (all but the
    last) in twelfths of the full width ``Fch·s`` at its output scale ``s``; the last cell
    outputs the head width. Branches share their leading cells while their operators, paths and
    widths agree (see :func:`~lightning_nas.methods.fasterseg.network.fasterseg_plan`).

    Args:
        ops: Per branch, the operator of each cell.
        paths: Per branch, the scale index each cell runs at (its input scale).
        widths: Per branch, the output width of every cell but the last, in twelfths (1..12).
        stem_head_width: Stem and head widths, in twelfths.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> g = load("experiments/genotypes/fasterseg_cityscapes.yaml")
        >>> g.lasts, g.stem_head_width, g.downs(1)
        ((2, 1), (8, 8), (0, 0, 0, 0, 0, 1, 0, 0, 0))
    """

    kind: ClassVar[str] = "fasterseg"
    version: ClassVar[int] = 1
    network: ClassVar[str] = "lightning_nas.methods.fasterseg.network.FasterSegNetwork"
    drawing: ClassVar[str | None] = "lightning_nas.methods.fasterseg.draw.draw"
    random_space: ClassVar[str | None] = "lightning_nas.methods.fasterseg.sampling.random_space"

    ops: tuple[tuple[str, ...], ...]
    paths: tuple[tuple[int, ...], ...]
    widths: tuple[tuple[int, ...], ...]
    stem_head_width: tuple[int, int] = (12, 12)

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("ops", "paths", "widths"):
            value = fields[key]
            if not isinstance(value, list | tuple):
                raise field_error(
                    source, key, f"got {type_name(value)}; expected a list per branch"
                )
            branches = []
            for b, branch in enumerate(value):
                if not isinstance(branch, list | tuple):
                    raise field_error(
                        source, f"{key}[{b}]", f"got {type_name(branch)}; expected a list"
                    )
                branches.append(tuple(branch))
            out[key] = tuple(branches)
        value = fields["stem_head_width"]
        if not isinstance(value, list | tuple):
            raise field_error(
                source, "stem_head_width", f"got {type_name(value)}; expected [stem, head]"
            )
        out["stem_head_width"] = tuple(value)
        return out

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        ops, paths, widths = fields["ops"], fields["paths"], fields["widths"]
        if not 1 <= len(ops) <= _FS_MAX_BRANCHES:
            raise field_error(
                source, "ops", f"got {len(ops)} branches; expected 1..{_FS_MAX_BRANCHES}"
            )
        for key, value in (("paths", paths), ("widths", widths)):
            if len(value) != len(ops):
                raise field_error(
                    source, key, f"got {len(value)} branches; expected {len(ops)} (as ops)"
                )
        for b in range(len(ops)):
            if not ops[b]:
                raise field_error(source, f"ops[{b}]", "empty; expected one op per cell")
            for c, op in enumerate(ops[b]):
                if op not in FASTERSEG_PRIMITIVES:
                    raise field_error(
                        source,
                        f"ops[{b}][{c}]",
                        f"unknown op {value_repr(op)}; "
                        f"expected one of {', '.join(FASTERSEG_PRIMITIVES)}",
                    )
            path = paths[b]
            if len(path) != len(ops[b]):
                raise field_error(
                    source,
                    f"paths[{b}]",
                    f"got {len(path)} scales; expected {len(ops[b])} (one per cell, as ops[{b}])",
                )
            for c, scale in enumerate(path):
                if not _is_int(scale) or not 0 <= scale < len(_FS_SCALES):
                    raise field_error(
                        source,
                        f"paths[{b}][{c}]",
                        f"got {value_repr(scale)}; expected a scale index 0..{len(_FS_SCALES) - 1} "
                        "(0: 1/8, 1: 1/16, 2: 1/32)",
                    )
                if c == 0 and scale != 0:
                    raise field_error(
                        source, f"paths[{b}][0]", f"got {scale}; expected 0 (paths start at 1/8)"
                    )
                if c and scale - path[c - 1] not in (0, 1):
                    raise field_error(
                        source,
                        f"paths[{b}][{c}]",
                        f"scale {scale} after scale {path[c - 1]}; expected {path[c - 1]} or "
                        f"{path[c - 1] + 1}",
                    )
            width = widths[b]
            if len(width) != len(path) - 1:
                raise field_error(
                    source,
                    f"widths[{b}]",
                    f"got {len(width)} widths; expected {len(path) - 1} (every cell but the last)",
                )
            for c, w in enumerate(width):
                if not _is_int(w) or not 1 <= w <= 12:
                    raise field_error(
                        source,
                        f"widths[{b}][{c}]",
                        f"got {value_repr(w)}; expected an integer 1..12",
                    )
        lasts = [path[-1] for path in paths]
        for b, last in enumerate(lasts):
            if last in lasts[:b]:
                raise field_error(
                    source,
                    f"paths[{b}]",
                    f"ends at scale {last}, as branch {lasts.index(last)} does; expected "
                    "branches ending at distinct scales",
                )
        stem_head = fields["stem_head_width"]
        if len(stem_head) != 2:
            raise field_error(
                source,
                "stem_head_width",
                f"got {value_repr(list(stem_head))}; expected [stem, head]",
            )
        for k, w in enumerate(stem_head):
            if not _is_int(w) or not 1 <= w <= 12:
                raise field_error(
                    source,
                    f"stem_head_width[{k}]",
                    f"got {value_repr(w)}; expected an integer 1..12",
                )

    @property
    def num_branches(self) -> int:
        """Number of branches."""
        return len(self.ops)

    @property
    def lasts(self) -> tuple[int, ...]:
        """The scale index each branch ends at."""
        return tuple(path[-1] for path in self.paths)

    def downs(self, branch: int) -> tuple[int, ...]:
        """1 for each cell of ``branch`` that downsamples (stride 2), else 0."""
        path = self.paths[branch]
        return tuple(b - a for a, b in zip(path, path[1:])) + (0,)

    def shares_cell(self, i: int, j: int, layer: int) -> bool:
        """Whether branches ``i`` and ``j`` run one cell at ``layer`` (and every cell before).

        Branches share a cell while their paths, operations and widths agree up to it; a
        branch's last cell is its own.
        """
        paths, ops, widths = self.paths, self.ops, self.widths
        for k in range(layer + 1):
            if k + 1 >= len(paths[i]) or k + 1 >= len(paths[j]):
                return False
            if (paths[i][k + 1], ops[i][k], widths[i][k]) != (
                paths[j][k + 1],
                ops[j][k],
                widths[j][k],
            ):
                return False
        return True

    def cell_groups(self, layer: int) -> list[list[int]]:
        """The branches that run a cell at ``layer``, grouped by the cell they share."""
        groups: list[list[int]] = []
        for b in range(self.num_branches):
            if layer >= len(self.paths[b]):
                continue
            for group in groups:
                if self.shares_cell(group[0], b, layer):
                    group.append(b)
                    break
            else:
                groups.append([b])
        return groups
