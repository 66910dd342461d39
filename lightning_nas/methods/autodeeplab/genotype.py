"""Auto-DeepLab's genotype: one cell and a network-level path (torch-free, validated)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lightning_nas.genotypes import Genotype, field_error, type_name, value_repr

__all__ = ["AUTODEEPLAB_PRIMITIVES", "AutoDeepLabGenotype"]

AUTODEEPLAB_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "atrous_conv_3x3",
    "atrous_conv_5x5",
)
"""Auto-DeepLab's eight operators (paper §3.1), in α-column order. ``sep_conv_KxK`` is the
official release's ``separable_KxK_2`` (two ReLU–depthwise–pointwise–BN layers, the same layers as
DARTS' SepConv) and ``atrous_conv_KxK`` its ``atrous_KxK`` (a *full* K×K conv with rate 2)."""


_ADL_OPS_ALLOWED = tuple(p for p in AUTODEEPLAB_PRIMITIVES if p != "none")


@dataclass(frozen=True)
class AutoDeepLabGenotype(Genotype):
    """An Auto-DeepLab architecture: one cell (shared by every layer) and a network-level path.

    ``cell`` lists two ``(op, input)`` pairs per block (block ``b`` is entries ``2b`` and
    ``2b+1``; its output is the sum of the two). Input indices: 0 = ``h_{l-2}``, 1 = ``h_{l-1}``,
    ``2 + k`` = block ``k`` (``k < b``). The cell output concatenates all blocks. Ops are
    :data:`~lightning_nas.ops.AUTODEEPLAB_PRIMITIVES` except ``none``.

    ``path`` gives each layer's level: level ``i`` runs at output stride ``strides[i]``. The first
    layer is at level 0 or 1, and consecutive layers differ by at most one level.

    Args:
        cell: ``(op, input)`` pairs, two per block.
        path: The level of each layer.
        strides: The output stride of each level (default ``(4, 8, 16, 32)``).

    Example:
        >>> from lightning_nas.genotypes import load
        >>> g = load("experiments/genotypes/autodeeplab_cityscapes.yaml")
        >>> len(g.cell) // 2, g.path[:4], g.strides
        (5, (0, 0, 0, 1), (4, 8, 16, 32))
    """

    kind: ClassVar[str] = "autodeeplab"
    version: ClassVar[int] = 1
    network: ClassVar[str] = "lightning_nas.methods.autodeeplab.network.AutoDeepLabNetwork"
    drawing: ClassVar[str | None] = "lightning_nas.methods.autodeeplab.draw.draw"
    random_space: ClassVar[str | None] = "lightning_nas.methods.autodeeplab.sampling.random_space"

    cell: tuple[tuple[str, int], ...]
    path: tuple[int, ...]
    strides: tuple[int, ...] = (4, 8, 16, 32)

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        entries = fields["cell"]
        if not isinstance(entries, list | tuple):
            raise field_error(
                source, "cell", f"got {type_name(entries)}; expected [op, input] pairs"
            )
        pairs = []
        for k, entry in enumerate(entries):
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise field_error(
                    source, f"cell[{k}]", f"got {value_repr(entry)}; expected [op, input]"
                )
            pairs.append(tuple(entry))
        out = {"cell": tuple(pairs)}
        for key in ("path", "strides"):
            value = fields[key]
            if not isinstance(value, list | tuple):
                raise field_error(
                    source, key, f"got {type_name(value)}; expected a list of integers"
                )
            out[key] = tuple(value)
        return out

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        cell = fields["cell"]
        if len(cell) == 0 or len(cell) % 2:
            raise field_error(source, "cell", f"got {len(cell)} entries; expected 2 per block")
        for k, (op, j) in enumerate(cell):
            if op not in _ADL_OPS_ALLOWED:
                raise field_error(
                    source,
                    f"cell[{k}][0]",
                    f"unknown op {value_repr(op)}; expected one of {', '.join(_ADL_OPS_ALLOWED)}",
                )
            block = k // 2
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < block + 2:
                raise field_error(
                    source,
                    f"cell[{k}][1]",
                    f"bad input index {value_repr(j)} for block {block}; "
                    f"expected 0 <= j < {block + 2} "
                    "(0: h[l-2], 1: h[l-1], 2+k: block k)",
                )
        strides = fields["strides"]
        if not strides or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in strides
        ):
            raise field_error(
                source, "strides", f"got {value_repr(list(strides))}; expected positive integers"
            )
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise field_error(
                source, "strides", f"got {value_repr(list(strides))}; expected each twice the last"
            )
        path = fields["path"]
        if not path:
            raise field_error(source, "path", "empty; expected one level per layer")
        for k, level in enumerate(path):
            if (
                isinstance(level, bool)
                or not isinstance(level, int)
                or not 0 <= level < len(strides)
            ):
                raise field_error(
                    source,
                    f"path[{k}]",
                    f"got {value_repr(level)}; expected a level 0..{len(strides) - 1}",
                )
            previous = path[k - 1] if k else 0
            if abs(level - previous) > 1:
                raise field_error(
                    source,
                    f"path[{k}]",
                    f"level {level} after level {previous}; expected a change of at most one level"
                    + (" (the first layer is at level 0 or 1)" if k == 0 else ""),
                )

    @property
    def num_blocks(self) -> int:
        """Number of blocks B of the cell."""
        return len(self.cell) // 2

    def output_strides(self) -> tuple[int, ...]:
        """The output stride of each layer along the path."""
        return tuple(self.strides[level] for level in self.path)
