"""Derived architectures: frozen, versioned dataclasses with a validated YAML round trip.

Every architecture kind is a frozen dataclass subclassing :class:`Genotype`. It declares its
``kind`` (the ``kind:`` key of its YAML file) and schema ``version``; defining the subclass
registers the kind, so :func:`load` and :func:`from_dict` find the class from the file alone.
:func:`build_network` turns any genotype (or the path of its YAML file) into the discrete
network that is retrained and exported.

Every validation problem raises :class:`GenotypeError` with one line naming the source, the
key, the bad value and what was expected.

Example:
    >>> from lightning_nas.genotypes import DartsGenotype, from_dict
    >>> g = DartsGenotype(
    ...     normal=(("sep_conv_3x3", 0), ("skip_connect", 1)),
    ...     normal_concat=(2,),
    ...     reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1)),
    ...     reduce_concat=(2,),
    ... )
    >>> g.to_dict()["normal"]
    [['sep_conv_3x3', 0], ['skip_connect', 1]]
    >>> from_dict(g.to_dict()) == g
    True
    >>> from_dict({**g.to_dict(), "normal": [["conv_9x9", 0], ["skip_connect", 1]]})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lightning_nas.genotypes.GenotypeError: <dict>: normal[0][0]: unknown op 'conv_9x9'; expected...
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml
from torch import nn

from lightning_nas.ops import AUTODEEPLAB_PRIMITIVES, DARTS_PRIMITIVES
from lightning_nas.ops_fasterseg import FASTERSEG_PRIMITIVES

if TYPE_CHECKING:
    from lightning_nas.networks.darts import DartsNetwork
    from lightning_nas.networks.fasterseg import FasterSegNetwork

__all__ = [
    "DartsGenotype",
    "FasterSegGenotype",
    "Genotype",
    "GenotypeError",
    "build_network",
    "from_dict",
    "load",
    "save",
]


class GenotypeError(ValueError):
    """A genotype (file or dict) that does not validate; the message is one line."""


def _fail(source: str, key: str, message: str) -> GenotypeError:
    return GenotypeError(f"{source}: {key}: {message}")


def _type_name(value: object) -> str:
    return type(value).__name__


_REGISTRY: dict[str, type[Genotype]] = {}


@dataclass(frozen=True)
class Genotype(ABC):
    """Base class of every derived architecture.

    Subclasses are frozen dataclasses that set the class attributes ``kind`` (unique name, the
    ``kind:`` key in YAML) and ``version`` (schema version, bumped on incompatible changes),
    override ``_convert`` / ``_validate`` and implement :meth:`build`; defining one registers it.
    Fields hold tuples (not lists) so genotypes are hashable.
    """

    kind: ClassVar[str]
    version: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register the subclass under its ``kind``."""
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return
        previous = _REGISTRY.get(kind)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise TypeError(
                f"genotype kind {kind!r} is already registered by {previous.__qualname__}"
            )
        _REGISTRY[kind] = cls

    def __post_init__(self) -> None:
        """Convert lists to tuples and validate the fields of a directly built genotype."""
        source = f"<{type(self).__name__}>"
        fields = self._convert(
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, source
        )
        self._validate(fields, source)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        """Check field values (already converted to tuples); raise :class:`GenotypeError`."""
        return None

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        """Turn YAML values (lists) into field values (tuples), checking their types."""
        return fields

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-able dict (lists, not tuples) with the ``kind`` and ``version`` keys."""

        def plain(value: Any) -> Any:
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            return value

        out: dict[str, Any] = {"kind": self.kind, "version": self.version}
        for f in dataclasses.fields(self):
            out[f.name] = plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>") -> Genotype:
        """Validate ``d`` (as written by :meth:`to_dict`) and build the genotype it describes.

        Called on :class:`Genotype` itself, dispatches on ``d["kind"]``.

        Args:
            d: Mapping with ``kind``, ``version`` and one key per field.
            source: Name of where ``d`` came from (a file path), used in error messages.

        Returns:
            The genotype.

        Raises:
            GenotypeError: On an unknown kind, a missing or extra key, a newer version, a value
                of the wrong type or an invalid architecture.
        """
        if not isinstance(d, Mapping):
            raise _fail(source, "<root>", f"got {_type_name(d)}; expected a mapping")
        if "kind" not in d:
            raise _fail(
                source, "kind", f"missing key; expected one of {', '.join(sorted(_REGISTRY))}"
            )
        kind = d["kind"]
        if not isinstance(kind, str) or kind not in _REGISTRY:
            raise _fail(
                source,
                "kind",
                f"unknown genotype kind {kind!r}; expected one of {', '.join(sorted(_REGISTRY))}",
            )
        target = _REGISTRY[kind]
        if cls is not Genotype and not issubclass(target, cls):
            raise _fail(source, "kind", f"got {kind!r}; expected {cls.kind!r}")

        if "version" not in d:
            raise _fail(source, "version", f"missing key; expected {target.version}")
        version = d["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _fail(
                source, "version", f"got {version!r}; expected an integer 1..{target.version}"
            )
        if version > target.version:
            raise _fail(
                source,
                "version",
                f"version {version} is newer than supported; expected at most "
                f"{target.version} (upgrade lightning_nas)",
            )

        names = [f.name for f in dataclasses.fields(target)]
        extra = [k for k in d if k not in ("kind", "version", *names)]
        if extra:
            raise _fail(
                source,
                str(extra[0]),
                f"unexpected key for kind {kind!r}; expected only kind, version, "
                + ", ".join(names),
            )
        missing = [n for n in names if n not in d]
        if missing:
            raise _fail(source, missing[0], f"missing key for kind {kind!r}")

        fields = target._convert({n: d[n] for n in names}, source)
        target._validate(fields, source)
        return target(**fields)

    @abstractmethod
    def build(self, num_classes: int, **kwargs: Any) -> nn.Module:
        """Build the discrete network of this genotype.

        Subclasses import their network class inside this method (no import cycle).

        Args:
            num_classes: Number of output classes.
            **kwargs: Keyword arguments of the network class (macro settings).

        Returns:
            The network.
        """


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
                raise _fail(
                    source, cell, f"got {_type_name(entries)}; expected a list of [op, input] pairs"
                )
            pairs = []
            for k, entry in enumerate(entries):
                if not isinstance(entry, list | tuple) or len(entry) != 2:
                    raise _fail(source, f"{cell}[{k}]", f"got {entry!r}; expected [op, input]")
                pairs.append(tuple(entry))
            out[cell] = tuple(pairs)
            concat = fields[f"{cell}_concat"]
            if not isinstance(concat, list | tuple):
                raise _fail(
                    source,
                    f"{cell}_concat",
                    f"got {_type_name(concat)}; expected a list of node indices",
                )
            out[f"{cell}_concat"] = tuple(concat)
        return out

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        for cell in ("normal", "reduce"):
            entries = fields[cell]
            if not isinstance(entries, tuple):
                raise _fail(source, cell, f"got {_type_name(entries)}; expected a tuple of pairs")
            if len(entries) == 0 or len(entries) % 2 != 0:
                raise _fail(
                    source,
                    cell,
                    f"got {len(entries)} entries; expected a positive even number "
                    "(2 per intermediate node)",
                )
            for k, entry in enumerate(entries):
                if not isinstance(entry, tuple) or len(entry) != 2:
                    raise _fail(source, f"{cell}[{k}]", f"got {entry!r}; expected (op, input)")
                op, j = entry
                if op == "none":
                    raise _fail(
                        source,
                        f"{cell}[{k}][0]",
                        "op 'none' is not allowed in a derived cell; expected one of "
                        + ", ".join(_OPS_ALLOWED),
                    )
                if op not in _OPS_ALLOWED:
                    raise _fail(
                        source,
                        f"{cell}[{k}][0]",
                        f"unknown op {op!r}; expected one of {', '.join(_OPS_ALLOWED)}",
                    )
                node = k // 2
                if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < node + 2:
                    raise _fail(
                        source,
                        f"{cell}[{k}][1]",
                        f"bad input index {j!r} for intermediate node {node}; "
                        f"expected an integer 0 <= j < {node + 2}",
                    )
            steps = len(entries) // 2
            key = f"{cell}_concat"
            concat = fields[key]
            if not isinstance(concat, tuple) or len(concat) == 0:
                raise _fail(source, key, f"got {concat!r}; expected a non-empty list of indices")
            for k, c in enumerate(concat):
                if isinstance(c, bool) or not isinstance(c, int) or not 2 <= c < steps + 2:
                    raise _fail(
                        source,
                        f"{key}[{k}]",
                        f"bad node index {c!r}; expected an intermediate node 2 <= c < {steps + 2}",
                    )
            if len(set(concat)) != len(concat):
                raise _fail(source, key, f"repeated node index in {list(concat)}; expected unique")

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
            raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
        return sum(op == "skip_connect" for op, _ in getattr(self, cell))

    def build(self, num_classes: int, **kwargs: Any) -> DartsNetwork:
        """Build a :class:`~lightning_nas.networks.darts.DartsNetwork` of these cells.

        Args:
            num_classes: Number of output classes.
            **kwargs: Further arguments of :class:`~lightning_nas.networks.darts.DartsNetwork`
                (``in_channels``, ``C``, ``layers``, ...).

        Returns:
            The network.
        """
        from lightning_nas.networks.darts import DartsNetwork

        return DartsNetwork(self, num_classes=num_classes, **kwargs)


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
        >>> g = load("experiments/genotypes/autodeeplab_cityscapes.yaml")
        >>> len(g.cell) // 2, g.path[:4], g.strides
        (5, (0, 0, 0, 1), (4, 8, 16, 32))
    """

    kind: ClassVar[str] = "autodeeplab"
    version: ClassVar[int] = 1

    cell: tuple[tuple[str, int], ...]
    path: tuple[int, ...]
    strides: tuple[int, ...] = (4, 8, 16, 32)

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        entries = fields["cell"]
        if not isinstance(entries, list | tuple):
            raise _fail(source, "cell", f"got {_type_name(entries)}; expected [op, input] pairs")
        pairs = []
        for k, entry in enumerate(entries):
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise _fail(source, f"cell[{k}]", f"got {entry!r}; expected [op, input]")
            pairs.append(tuple(entry))
        out = {"cell": tuple(pairs)}
        for key in ("path", "strides"):
            value = fields[key]
            if not isinstance(value, list | tuple):
                raise _fail(source, key, f"got {_type_name(value)}; expected a list of integers")
            out[key] = tuple(value)
        return out

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        cell = fields["cell"]
        if len(cell) == 0 or len(cell) % 2:
            raise _fail(source, "cell", f"got {len(cell)} entries; expected 2 per block")
        for k, (op, j) in enumerate(cell):
            if op not in _ADL_OPS_ALLOWED:
                raise _fail(
                    source,
                    f"cell[{k}][0]",
                    f"unknown op {op!r}; expected one of {', '.join(_ADL_OPS_ALLOWED)}",
                )
            block = k // 2
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < block + 2:
                raise _fail(
                    source,
                    f"cell[{k}][1]",
                    f"bad input index {j!r} for block {block}; expected 0 <= j < {block + 2} "
                    "(0: h[l-2], 1: h[l-1], 2+k: block k)",
                )
        strides = fields["strides"]
        if not strides or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in strides
        ):
            raise _fail(source, "strides", f"got {list(strides)!r}; expected positive integers")
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise _fail(source, "strides", f"got {list(strides)!r}; expected each twice the last")
        path = fields["path"]
        if not path:
            raise _fail(source, "path", "empty; expected one level per layer")
        for k, level in enumerate(path):
            if (
                isinstance(level, bool)
                or not isinstance(level, int)
                or not 0 <= level < len(strides)
            ):
                raise _fail(
                    source, f"path[{k}]", f"got {level!r}; expected a level 0..{len(strides) - 1}"
                )
            previous = path[k - 1] if k else 0
            if abs(level - previous) > 1:
                raise _fail(
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

    def build(self, num_classes: int, **kwargs: Any) -> nn.Module:
        """Build :class:`~lightning_nas.networks.autodeeplab.AutoDeepLabNetwork`.

        ``**kwargs`` are its further arguments (``filter_multiplier``, ...).
        """
        from lightning_nas.networks.autodeeplab import AutoDeepLabNetwork

        return AutoDeepLabNetwork(self, num_classes=num_classes, **kwargs)


_FS_MAX_BRANCHES = 3
_FS_SCALES = (8, 16, 32)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class FasterSegGenotype(Genotype):
    """A FasterSeg architecture: 1 to 3 branches of cells sharing a stem and a head.

    Branch ``b`` is a chain of cells; cell ``l`` runs operator ``ops[b][l]`` (one of
    :data:`~lightning_nas.ops_fasterseg.FASTERSEG_PRIMITIVES`) at scale index ``paths[b][l]``
    (0, 1, 2 = output stride 8, 16, 32; the path starts at 0 and moves down by at most one scale
    per cell). Cell ``l`` downsamples (stride 2) iff ``paths[b][l + 1] == paths[b][l] + 1``; the
    last cell never does, so the branch ends at scale ``paths[b][-1]`` (its "last"; the branches
    end at distinct scales). ``widths[b][l]`` is the output width of cell ``l`` (all but the
    last) in twelfths of the full width ``Fch·s`` at its output scale ``s``; the last cell
    outputs the head width. Branches share their leading cells while their operators, paths and
    widths agree (see :func:`~lightning_nas.networks.fasterseg.fasterseg_plan`).

    Args:
        ops: Per branch, the operator of each cell.
        paths: Per branch, the scale index each cell runs at (its input scale).
        widths: Per branch, the output width of every cell but the last, in twelfths (1..12).
        stem_head_width: Stem and head widths, in twelfths.

    Example:
        >>> g = load("experiments/genotypes/fasterseg_cityscapes.yaml")
        >>> g.lasts, g.stem_head_width, g.downs(1)
        ((2, 1), (8, 8), (0, 0, 0, 0, 0, 1, 0, 0, 0))
    """

    kind: ClassVar[str] = "fasterseg"
    version: ClassVar[int] = 1

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
                raise _fail(source, key, f"got {_type_name(value)}; expected a list per branch")
            branches = []
            for b, branch in enumerate(value):
                if not isinstance(branch, list | tuple):
                    raise _fail(source, f"{key}[{b}]", f"got {_type_name(branch)}; expected a list")
                branches.append(tuple(branch))
            out[key] = tuple(branches)
        value = fields["stem_head_width"]
        if not isinstance(value, list | tuple):
            raise _fail(
                source, "stem_head_width", f"got {_type_name(value)}; expected [stem, head]"
            )
        out["stem_head_width"] = tuple(value)
        return out

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        ops, paths, widths = fields["ops"], fields["paths"], fields["widths"]
        if not 1 <= len(ops) <= _FS_MAX_BRANCHES:
            raise _fail(source, "ops", f"got {len(ops)} branches; expected 1..{_FS_MAX_BRANCHES}")
        for key, value in (("paths", paths), ("widths", widths)):
            if len(value) != len(ops):
                raise _fail(source, key, f"got {len(value)} branches; expected {len(ops)} (as ops)")
        for b in range(len(ops)):
            if not ops[b]:
                raise _fail(source, f"ops[{b}]", "empty; expected one op per cell")
            for c, op in enumerate(ops[b]):
                if op not in FASTERSEG_PRIMITIVES:
                    raise _fail(
                        source,
                        f"ops[{b}][{c}]",
                        f"unknown op {op!r}; expected one of {', '.join(FASTERSEG_PRIMITIVES)}",
                    )
            path = paths[b]
            if len(path) != len(ops[b]):
                raise _fail(
                    source,
                    f"paths[{b}]",
                    f"got {len(path)} scales; expected {len(ops[b])} (one per cell, as ops[{b}])",
                )
            for c, scale in enumerate(path):
                if not _is_int(scale) or not 0 <= scale < len(_FS_SCALES):
                    raise _fail(
                        source,
                        f"paths[{b}][{c}]",
                        f"got {scale!r}; expected a scale index 0..{len(_FS_SCALES) - 1} "
                        "(0: 1/8, 1: 1/16, 2: 1/32)",
                    )
                if c == 0 and scale != 0:
                    raise _fail(
                        source, f"paths[{b}][0]", f"got {scale}; expected 0 (paths start at 1/8)"
                    )
                if c and scale - path[c - 1] not in (0, 1):
                    raise _fail(
                        source,
                        f"paths[{b}][{c}]",
                        f"scale {scale} after scale {path[c - 1]}; expected {path[c - 1]} or "
                        f"{path[c - 1] + 1}",
                    )
            width = widths[b]
            if len(width) != len(path) - 1:
                raise _fail(
                    source,
                    f"widths[{b}]",
                    f"got {len(width)} widths; expected {len(path) - 1} (every cell but the last)",
                )
            for c, w in enumerate(width):
                if not _is_int(w) or not 1 <= w <= 12:
                    raise _fail(
                        source, f"widths[{b}][{c}]", f"got {w!r}; expected an integer 1..12"
                    )
        lasts = [path[-1] for path in paths]
        for b, last in enumerate(lasts):
            if last in lasts[:b]:
                raise _fail(
                    source,
                    f"paths[{b}]",
                    f"ends at scale {last}, as branch {lasts.index(last)} does; expected "
                    "branches ending at distinct scales",
                )
        stem_head = fields["stem_head_width"]
        if len(stem_head) != 2:
            raise _fail(
                source, "stem_head_width", f"got {list(stem_head)!r}; expected [stem, head]"
            )
        for k, w in enumerate(stem_head):
            if not _is_int(w) or not 1 <= w <= 12:
                raise _fail(
                    source, f"stem_head_width[{k}]", f"got {w!r}; expected an integer 1..12"
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

    def build(self, num_classes: int, **kwargs: Any) -> FasterSegNetwork:
        """Build :class:`~lightning_nas.networks.fasterseg.FasterSegNetwork`.

        ``**kwargs`` are its further arguments (``Fch``, ``aux_heads``, ``in_channels``).
        """
        from lightning_nas.networks.fasterseg import FasterSegNetwork

        return FasterSegNetwork(self, num_classes=num_classes, **kwargs)


def from_dict(d: Mapping[str, Any], source: str = "<dict>") -> Genotype:
    """Build the genotype described by ``d``, dispatching on ``d["kind"]``.

    Args:
        d: Mapping with ``kind``, ``version`` and the fields of that kind.
        source: Where ``d`` came from, used in error messages.

    Returns:
        The genotype.

    Raises:
        GenotypeError: If ``d`` does not validate.
    """
    return Genotype.from_dict(d, source=source)


def save(genotype: Genotype, path: str | Path) -> None:
    """Write ``genotype`` as readable YAML (parent folders are created).

    Args:
        genotype: The genotype.
        path: Destination file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(genotype.to_dict(), sort_keys=False, default_flow_style=None)
    header = (
        f"# lightning_nas genotype (kind {genotype.kind}, schema version {genotype.version}).\n"
        "# Read with lightning_nas.genotypes.load; build with lightning_nas.build_network.\n"
    )
    path.write_text(header + body)


def load(path: str | Path) -> Genotype:
    """Read and validate a genotype YAML file written by :func:`save` (or by hand).

    Args:
        path: The file.

    Returns:
        The genotype, of the class its ``kind`` names.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        GenotypeError: If the file is not valid YAML or does not validate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"genotype file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f"line {where.line + 1}" if where is not None else "<root>"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise _fail(str(path), line, f"invalid YAML ({problem}); expected a mapping") from err
    return from_dict(data, source=str(path))


def build_network(genotype: Genotype | str | Path, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the discrete network of ``genotype`` (or of the genotype file at that path).

    Args:
        genotype: A genotype, or the path of its YAML file.
        num_classes: Number of output classes.
        **kwargs: Keyword arguments of the genotype kind's network class.

    Returns:
        The network.

    Example:
        >>> import torch
        >>> from lightning_nas.genotypes import build_network
        >>> net = build_network("experiments/genotypes/darts_v2.yaml", num_classes=5, C=4, layers=3)
        >>> tuple(net(torch.randn(2, 3, 32, 32)).shape)
        (2, 5, 32, 32)
    """
    if isinstance(genotype, str | Path):
        genotype = load(genotype)
    if not isinstance(genotype, Genotype):
        raise TypeError(f"build_network: expected a Genotype or a path, got {_type_name(genotype)}")
    return genotype.build(num_classes, **kwargs)
