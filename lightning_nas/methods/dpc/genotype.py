"""DPC's genotype: a dense prediction cell of B branches (torch-free, validated, versioned).

The search space of Chen et al. (NeurIPS 2018, §3.1) as the official TensorFlow release
(``tensorflow/models``, ``research/deeplab/core/dense_prediction_cell.py``) reads it: branch
``i`` applies one of 81 operations to the backbone feature ``F`` or to the output of an earlier
branch; the cell's output concatenates every branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lightning_nas.genotypes import Genotype, field_error, type_name, value_repr

__all__ = ["GRIDS", "NUM_BRANCHES", "OPS", "OP_NAMES", "RATES", "DPCGenotype"]

RATES: tuple[int, ...] = (1, 3, 6, 9, 12, 15, 18, 21)
"""Atrous rates of ``sep_conv3x3``, each of ``r_h`` and ``r_w`` independently (at OS 16)."""

GRIDS: tuple[int, ...] = (1, 2, 4, 8)
"""Grid sizes of ``pyramid_pooling``, each of ``g_h`` and ``g_w`` independently."""

OP_NAMES: tuple[str, ...] = ("conv1x1", "sep_conv3x3", "pyramid_pooling")
"""The three operation types of a branch."""

OPS: tuple[tuple[str, int, int], ...] = (
    (("conv1x1", 1, 1),)
    + tuple(("sep_conv3x3", a, b) for a in RATES for b in RATES)
    + tuple(("pyramid_pooling", a, b) for a in GRIDS for b in GRIDS)
)
"""The 81 operation choices ``(op, a, b)`` of a branch: 1 + 8·8 rates + 4·4 grids."""

NUM_BRANCHES = 5
"""B of the paper and of the published cell."""

_ARGS: dict[str, tuple[str, tuple[int, ...]]] = {
    "conv1x1": ("argument", (1,)),
    "sep_conv3x3": ("rate", RATES),
    "pyramid_pooling": ("grid", GRIDS),
}


@dataclass(frozen=True)
class DPCGenotype(Genotype):
    """A dense prediction cell: ``B`` branches, each ``(input, op, (a, b))``.

    * ``input``: ``-1`` reads the backbone feature ``F``; ``k >= 0`` reads the output of branch
      ``k``, which must come earlier (``k < i``). Branch 0 reads ``F`` (the paper's ``X_1 = F``;
      the release has no earlier branch to read).
    * ``op``: ``conv1x1`` (1×1 conv → BN → ReLU), ``sep_conv3x3`` (the release's
      ``split_separable_conv2d``: depthwise 3×3 at rate ``(a, b)`` → BN → ReLU → pointwise 1×1 →
      BN → ReLU) or ``pyramid_pooling`` (stride-1 average pooling for a ``a × b`` grid, VALID →
      1×1 conv → BN → ReLU → bilinear resize back; see
      :class:`~lightning_nas.methods.dpc.ops.PyramidPooling`).
    * ``(a, b)``: the rates ``(r_h, r_w)`` of ``sep_conv3x3``, each in :data:`RATES` (rates at
      output stride 16; the network multiplies them by ``16 // output_stride``); the grid
      ``(g_h, g_w)`` of ``pyramid_pooling``, each in :data:`GRIDS`; ``(1, 1)`` for ``conv1x1``.

    In YAML each branch is one line ``[input, op, [a, b]]``. ``B`` is the number of branches
    (the paper's and the published cell's is :data:`NUM_BRANCHES` = 5; any ``B >= 1`` is valid).

    Args:
        branches: The branches, in order.

    Example:
        >>> g = DPCGenotype(branches=[[-1, "sep_conv3x3", [1, 6]], [0, "pyramid_pooling", [2, 4]]])
        >>> g.branches
        ((-1, 'sep_conv3x3', (1, 6)), (0, 'pyramid_pooling', (2, 4)))
        >>> g.to_dict()["branches"][1]
        [0, 'pyramid_pooling', [2, 4]]
        >>> DPCGenotype(branches=[[-1, "sep_conv3x3", [1, 5]]])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lightning_nas.genotypes.GenotypeError: <DPCGenotype>: branches[0][2]: rate 5 is not ...
    """

    kind: ClassVar[str] = "dpc"
    version: ClassVar[int] = 1
    network: ClassVar[str] = "lightning_nas.methods.dpc.network.DPCNetwork"
    drawing: ClassVar[str | None] = "lightning_nas.methods.dpc.draw.draw"
    random_space: ClassVar[str | None] = "lightning_nas.methods.dpc.sampling.random_space"

    branches: tuple[tuple[int, str, tuple[int, int]], ...]

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        entries = fields["branches"]
        if not isinstance(entries, list | tuple):
            raise field_error(
                source,
                "branches",
                f"got {type_name(entries)}; expected a list of [input, op, [a, b]] branches",
            )
        branches = []
        for i, entry in enumerate(entries):
            key = f"branches[{i}]"
            if not isinstance(entry, list | tuple) or len(entry) != 3:
                raise field_error(
                    source, key, f"got {value_repr(entry)}; expected [input, op, [a, b]]"
                )
            inp, op, args = entry
            if not isinstance(args, list | tuple) or len(args) != 2:
                raise field_error(
                    source, f"{key}[2]", f"got {value_repr(args)}; expected [a, b] (two integers)"
                )
            branches.append((inp, op, tuple(args)))
        return {"branches": tuple(branches)}

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        branches = fields["branches"]
        if not isinstance(branches, tuple) or len(branches) == 0:
            raise field_error(
                source, "branches", f"got {value_repr(branches)}; expected at least one branch"
            )
        for i, (inp, op, args) in enumerate(branches):
            key = f"branches[{i}]"
            if isinstance(inp, bool) or not isinstance(inp, int):
                raise field_error(
                    source,
                    f"{key}[0]",
                    f"got input {value_repr(inp)}; expected an integer -1..{i - 1}",
                )
            if i == 0 and inp != -1:
                raise field_error(
                    source,
                    f"{key}[0]",
                    f"got input {value_repr(inp)}; branch 0 must read the backbone feature (-1)",
                )
            if not -1 <= inp < i:
                raise field_error(
                    source,
                    f"{key}[0]",
                    f"got input {value_repr(inp)}; branch {i} reads -1 (the backbone feature) "
                    f"or an earlier branch 0..{i - 1}",
                )
            if not isinstance(op, str) or op not in _ARGS:
                raise field_error(
                    source,
                    f"{key}[1]",
                    f"unknown op {value_repr(op)}; expected one of {', '.join(OP_NAMES)}",
                )
            what, allowed = _ARGS[op]
            for value in args:
                if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                    expected = (
                        "[1, 1] (a 1x1 conv has no rate)"
                        if op == "conv1x1"
                        else f"each of [a, b] in {', '.join(map(str, allowed))}"
                    )
                    raise field_error(
                        source,
                        f"{key}[2]",
                        f"{what} {value_repr(value)} is not valid for {op} "
                        f"(got {value_repr(list(args))}); expected {expected}",
                    )

    @property
    def num_branches(self) -> int:
        """B, the number of branches."""
        return len(self.branches)
