"""DARTS' genotype: a normal and a reduction cell (torch-free, validated, versioned)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from lightning_nas.genotypes import Genotype, field_error, type_name, value_repr

__all__ = ["DARTS_PRIMITIVES", "DartsGenotype"]

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The eight DARTS candidate operations, in the order of the architecture-parameter columns."""

_OPS_ALLOWED = tuple(p for p in DARTS_PRIMITIVES if p != "none")


@dataclass(frozen=True)
class DartsGenotype(Genotype):
    """A DARTS normal + reduction cell pair, exactly as ``quark0/darts`` writes it.

    Each cell lists two ``(op, input)`` pairs per intermediate node; node ``i`` (0-based among
    intermediate nodes) may take input ``j`` with ``0 <= j < i + 2`` (0 and 1 are the two cell
    inputs, ``j >= 2`` is intermediate node ``j - 2``). The cell output concatenates the nodes in
    ``*_concat`` (state indices, ``>= 2``).

    Args:
        normal: ``(op, input)`` pairs of the normal cell.
        normal_concat: State indices concatenated into the normal cell's output.
        reduce: ``(op, input)`` pairs of the reduction cell.
        reduce_concat: State indices concatenated into the reduction cell's output.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> g = load("experiments/genotypes/darts_v2.yaml")
        >>> g.normal[:2], g.normal_concat
        ((('sep_conv_3x3', 0), ('sep_conv_3x3', 1)), (2, 3, 4, 5))
        >>> g.num_skip_connections("normal"), g.num_skip_connections("reduce")
        (2, 3)
    """

    kind: ClassVar[str] = "darts"
    version: ClassVar[int] = 1
    network: ClassVar[str] = "lightning_nas.methods.darts.network.DartsNetwork"
    drawing: ClassVar[str | None] = "lightning_nas.methods.darts.draw.draw"
    random_space: ClassVar[str | None] = "lightning_nas.methods.darts.sampling.random_space"

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cell in ("normal", "reduce"):
            entries = fields[cell]
            if not isinstance(entries, list | tuple):
                raise field_error(
                    source, cell, f"got {type_name(entries)}; expected a list of [op, input] pairs"
                )
            pairs = []
            for k, entry in enumerate(entries):
                if not isinstance(entry, list | tuple) or len(entry) != 2:
                    raise field_error(
                        source, f"{cell}[{k}]", f"got {value_repr(entry)}; expected [op, input]"
                    )
                pairs.append(tuple(entry))
            out[cell] = tuple(pairs)
            concat = fields[f"{cell}_concat"]
            if not isinstance(concat, list | tuple):
                raise field_error(
                    source,
                    f"{cell}_concat",
                    f"got {type_name(concat)}; expected a list of node indices",
                )
            out[f"{cell}_concat"] = tuple(concat)
        return out

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        for cell in ("normal", "reduce"):
            entries = fields[cell]
            if not isinstance(entries, tuple):
                raise field_error(
                    source, cell, f"got {type_name(entries)}; expected a tuple of pairs"
                )
            if len(entries) == 0 or len(entries) % 2 != 0:
                raise field_error(
                    source,
                    cell,
                    f"got {len(entries)} entries; expected a positive even number "
                    "(2 per intermediate node)",
                )
            for k, entry in enumerate(entries):
                if not isinstance(entry, tuple) or len(entry) != 2:
                    raise field_error(
                        source, f"{cell}[{k}]", f"got {value_repr(entry)}; expected (op, input)"
                    )
                op, j = entry
                if op == "none":
                    raise field_error(
                        source,
                        f"{cell}[{k}][0]",
                        "op 'none' is not allowed in a derived cell; expected one of "
                        + ", ".join(_OPS_ALLOWED),
                    )
                if op not in _OPS_ALLOWED:
                    raise field_error(
                        source,
                        f"{cell}[{k}][0]",
                        f"unknown op {value_repr(op)}; expected one of {', '.join(_OPS_ALLOWED)}",
                    )
                node = k // 2
                if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < node + 2:
                    raise field_error(
                        source,
                        f"{cell}[{k}][1]",
                        f"bad input index {value_repr(j)} for intermediate node {node}; "
                        f"expected an integer 0 <= j < {node + 2}",
                    )
            steps = len(entries) // 2
            key = f"{cell}_concat"
            concat = fields[key]
            if not isinstance(concat, tuple) or len(concat) == 0:
                raise field_error(
                    source, key, f"got {value_repr(concat)}; expected a non-empty list of indices"
                )
            for k, c in enumerate(concat):
                if isinstance(c, bool) or not isinstance(c, int) or not 2 <= c < steps + 2:
                    raise field_error(
                        source,
                        f"{key}[{k}]",
                        f"bad node index {value_repr(c)}; "
                        f"expected an intermediate node 2 <= c < {steps + 2}",
                    )
            if len(set(concat)) != len(concat):
                raise field_error(
                    source, key, f"repeated node index in {list(concat)}; expected unique"
                )

    @property
    def steps(self) -> dict[str, int]:
        """Number of intermediate nodes of each cell."""
        return {"normal": len(self.normal) // 2, "reduce": len(self.reduce) // 2}

    def num_skip_connections(self, cell: Literal["normal", "reduce"] = "normal") -> int:
        """Number of ``skip_connect`` edges in ``cell``.

        Args:
            cell: ``"normal"`` or ``"reduce"``.

        Returns:
            The count (DARTS' known failure mode is a normal cell full of skips).

        Raises:
            ValueError: If ``cell`` is neither ``"normal"`` nor ``"reduce"``.
        """
        if cell not in ("normal", "reduce"):
            raise ValueError(f"cell must be 'normal' or 'reduce', got {value_repr(cell)}")
        return sum(op == "skip_connect" for op, _ in getattr(self, cell))
