"""The discrete network of a FasterSeg genotype: stem, branches of cells, fused refined head.

Follows the official release's ``train/model_seg.py`` (``Network_Multi_Path_Infer``; reference
§3.3 "Head" and §3.4). :func:`fasterseg_plan` is the single description of the network, from
which both :class:`FasterSegNetwork` and :func:`fasterseg_latency_configs` are built:

* **Stem** (width ``r_stem = stem_head_width[0] / 12``): ConvNorm 3×3 stride 2 → ``conv_2x``
  stride 2 → ``conv_2x`` stride 2, to ``nf(8)`` channels at output stride 8
  (:func:`~lightning_nas.methods.fasterseg.ops.stem_channels`).
* **Cells**: layer by layer, every group of branches that still agree (same operators, paths and
  widths so far, and neither ends at this layer) runs one shared cell; once split, branches stay
  split. Cell ``l`` of a branch runs at scale ``s = 8·2^path[l]`` and maps
  ``num_filters(s, Fch, widths[l-1]/12)`` channels (the stem's for ``l = 0``) to
  ``num_filters(s·(down+1), Fch, widths[l]/12)`` (the head width ``nf(s)`` for the last cell),
  with stride ``1 + down``.
* **Head** (``nf(s) = num_filters(s, Fch, stem_head_width[1] / 12)``): each branch's last
  feature is refined towards 1/8: per scale up, ConvNorm 1×1 to the finer head width → bilinear
  resize to the branch's last feature at the finer scale → concat with it → ConvNorm 3×3. The
  branches' results are concatenated → ConvNorm 1×1 to ``2·nf(8)`` (the release's
  ``FeatureFusion``, whose channel attention is built but never used there, so not built here)
  → :class:`~lightning_nas.methods.fasterseg.ops.Head` → bilinear resize to the input size.

Sizes: every scale has one spatial size, ``ceil`` halving from the stem's ``ceil(H / 8)``; every
resize targets a recorded feature's size, so any input size works. All resizes are bilinear
with ``align_corners=True``, as in the release.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.genotypes import load
from lightning_nas.latency.config import OpConfig
from lightning_nas.methods.fasterseg.genotype import FasterSegGenotype
from lightning_nas.methods.fasterseg.ops import (
    ConvNorm,
    Head,
    UpsampleConcat,
    make_fasterseg_op,
    make_fasterseg_stem,
    num_filters,
    resize,
    stem_channels,
)

__all__ = [
    "FasterSegCellPlan",
    "FasterSegNetwork",
    "FasterSegPlan",
    "FasterSegRefine",
    "fasterseg_latency_configs",
    "fasterseg_plan",
    "head_latency_configs",
    "refine_steps",
]

SCALES: tuple[int, int, int] = (8, 16, 32)
"""Output stride of scale index 0, 1, 2."""


@dataclass(frozen=True)
class FasterSegCellPlan:
    """One cell of the network, run once for all the branches that share it.

    Attributes:
        layer: Layer index (position along the branches).
        branches: The branches sharing the cell (indices into the genotype's branches).
        op: Operator name.
        C_in: Input channels.
        C_out: Output channels.
        stride: 1, or 2 when the cell moves one scale down.
        scale: Output stride of the cell's input (8, 16 or 32).
    """

    layer: int
    branches: tuple[int, ...]
    op: str
    C_in: int
    C_out: int
    stride: int
    scale: int

    @property
    def name(self) -> str:
        """Stage name, e.g. ``cell3_b0`` or ``cell0_b01`` (shared by branches 0 and 1)."""
        return f"cell{self.layer}_b{''.join(str(b) for b in self.branches)}"

    @property
    def in_index(self) -> int:
        """Scale index (0, 1, 2) of the input."""
        return SCALES.index(self.scale)

    @property
    def out_index(self) -> int:
        """Scale index (0, 1, 2) of the output."""
        return self.in_index + self.stride - 1


@dataclass(frozen=True)
class FasterSegPlan:
    """Every module and channel count of a FasterSeg network (see :func:`fasterseg_plan`).

    Attributes:
        stem: Output channels of the stem's three stages (the last at output stride 8).
        stem_unit: ``Fch · r_stem``: the stem's channels are ``stem_channels(1, stem_unit)``.
        cells: The cells in execution order (layer by layer; within a layer, by first branch).
        lasts: The scale index each branch ends at.
        head: Head widths ``(nf(8), nf(16), nf(32))``.
        features: Per branch, the channels of its last feature at each scale index (``None``
            where the branch never reaches the scale); the stem output counts as scale 0.
    """

    stem: tuple[int, int, int]
    stem_unit: float
    cells: tuple[FasterSegCellPlan, ...]
    lasts: tuple[int, ...]
    head: tuple[int, int, int]
    features: tuple[tuple[int | None, ...], ...]

    def _feature_of(self, last: int, index: int) -> int | None:
        if last not in self.lasts:
            return None
        return self.features[self.lasts.index(last)][index]

    @property
    def ch_16(self) -> int | None:
        """Channels of the 1/16 skip of the branch ending at 1/32 (``None`` without one)."""
        return self._feature_of(2, 1)

    @property
    def ch_8_2(self) -> int | None:
        """Channels of the 1/8 skip of the branch ending at 1/32 (``None`` without one)."""
        return self._feature_of(2, 0)

    @property
    def ch_8_1(self) -> int | None:
        """Channels of the 1/8 skip of the branch ending at 1/16 (``None`` without one)."""
        return self._feature_of(1, 0)

    def refine_steps(self, branch: int) -> tuple[tuple[int, int, int, int], ...]:
        """The refinement steps of ``branch``, coarse to fine (see :func:`refine_steps`)."""
        return refine_steps(self.head, self.lasts[branch], self.features[branch])

    @property
    def fusion(self) -> tuple[int, int]:
        """``(C_in, C_out)`` of the feature fusion: ``(nf(8)·branches, nf(8)·branches)``.

        The release's ``FeatureFusion(nf8 · branch, nf8 · branch)``; its head then reads
        ``nf8 · branch`` channels (``2·nf(8)`` for the published two branches).
        """
        return self.head[0] * len(self.lasts), self.head[0] * len(self.lasts)

    @property
    def aux16(self) -> int | None:
        """Input channels of the auxiliary 1/16 head (``None`` if no branch ends below 1/8)."""
        channels = [f[1] for f, last in zip(self.features, self.lasts) if last >= 1]
        return sum(c for c in channels if c is not None) if channels else None

    @property
    def aux32(self) -> int | None:
        """Input channels of the auxiliary 1/32 head (``None`` if no branch ends at 1/32)."""
        return self.head[2] if 2 in self.lasts else None


def refine_steps(
    head: Sequence[int], last: int, skips: Sequence[int | None]
) -> tuple[tuple[int, int, int, int], ...]:
    """The head's refinement steps of a branch ending at scale index ``last``, coarse to fine.

    Args:
        head: Head widths ``(nf(8), nf(16), nf(32))``.
        last: The branch's last scale index.
        skips: Channels of the branch's last feature at each scale index below ``last``.

    Returns:
        One ``(C_in, C_reduced, C_skip, C_out)`` per scale between ``last`` and 1/8: ConvNorm
        1×1 ``C_in → C_reduced``, upsample, concat the ``C_skip``-channel skip, ConvNorm 3×3
        ``C_reduced + C_skip → C_out``. Empty for a branch ending at 1/8.

    Example:
        >>> refine_steps((64, 128, 256), 2, (32, 64))
        ((256, 128, 64, 128), (128, 64, 32, 64))
    """
    steps = []
    for s in range(last, 0, -1):
        skip = skips[s - 1]
        if skip is None:
            raise ValueError(f"refine_steps: no skip feature at scale index {s - 1}")
        steps.append((head[s], head[s - 1], skip, head[s - 1]))
    return tuple(steps)


def fasterseg_plan(genotype: FasterSegGenotype, Fch: int = 12) -> FasterSegPlan:
    """Plan the network of ``genotype``: its cells (shared ones once) and channel counts.

    Args:
        genotype: The genotype.
        Fch: Base channel count (full width at scale ``s`` is ``Fch·s``).

    Returns:
        The plan.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> plan = fasterseg_plan(load("experiments/genotypes/fasterseg_cityscapes.yaml"))
        >>> plan.stem, plan.head, (plan.ch_16, plan.ch_8_2, plan.ch_8_1)
        ((32, 64, 64), (64, 128, 256), (64, 32, 32))
        >>> [(c.name, c.op, c.C_in, c.C_out, c.stride) for c in plan.cells[:4]]
        ... # doctest: +NORMALIZE_WHITESPACE
        [('cell0_b01', 'conv_2x', 64, 32, 1), ('cell1_b01', 'conv_2x', 32, 32, 1),
         ('cell2_b01', 'conv_2x_downup', 32, 32, 1), ('cell3_b0', 'conv_downup', 32, 128, 2)]
    """
    r_stem, r_head = (w / 12 for w in genotype.stem_head_width)
    stem = stem_channels(Fch, r_stem)
    head = (
        num_filters(8, Fch, r_head),
        num_filters(16, Fch, r_head),
        num_filters(32, Fch, r_head),
    )
    num_branches = genotype.num_branches
    features: list[list[int | None]] = [[stem[2], None, None] for _ in range(num_branches)]
    cells: list[FasterSegCellPlan] = []
    for layer in range(max(len(p) for p in genotype.paths)):
        for group in genotype.cell_groups(layer):
            b = group[0]
            path, widths = genotype.paths[b], genotype.widths[b]
            last_cell = layer == len(path) - 1
            down = 0 if last_cell else path[layer + 1] - path[layer]
            scale = SCALES[path[layer]]
            C_in = stem[2] if layer == 0 else num_filters(scale, Fch, widths[layer - 1] / 12)
            if last_cell:
                C_out = head[path[layer]]
            else:
                C_out = num_filters(scale * (down + 1), Fch, widths[layer] / 12)
            cell = FasterSegCellPlan(
                layer, tuple(group), genotype.ops[b][layer], C_in, C_out, 1 + down, scale
            )
            cells.append(cell)
            for member in group:
                features[member][cell.out_index] = C_out
    return FasterSegPlan(
        stem=stem,
        stem_unit=Fch * r_stem,
        cells=tuple(cells),
        lasts=genotype.lasts,
        head=head,
        features=tuple(tuple(f) for f in features),
    )


class FasterSegRefine(nn.Module):
    """One branch's path from its last feature up to 1/8 (empty for a branch ending at 1/8).

    Per step (coarse to fine): ConvNorm 1×1 → bilinear resize to the skip's size → concat
    ``[x, skip]`` → ConvNorm 3×3.

    Args:
        steps: ``(C_in, C_reduced, C_skip, C_out)`` per step
            (:meth:`FasterSegPlan.refine_steps`).
    """

    def __init__(self, steps: Sequence[tuple[int, int, int, int]]) -> None:
        super().__init__()
        self.reduce = nn.ModuleList(ConvNorm(c_in, c_mid, 1) for c_in, c_mid, _, _ in steps)
        self.fuse = nn.ModuleList(
            ConvNorm(c_mid + c_skip, c_out, 3) for _, c_mid, c_skip, c_out in steps
        )
        self.up = UpsampleConcat()

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        """Refine ``x`` with ``skips`` (one per step, coarse to fine)."""
        for reduce, fuse, skip in zip(self.reduce, self.fuse, skips):
            x = fuse(self.up(reduce(x), skip))
        return x


class FasterSegNetwork(nn.Module):
    """A FasterSeg genotype as a segmentation network (the release's ``Network_Multi_Path_Infer``).

    See the module docstring and :func:`fasterseg_plan` for the layout; the cells are fixed
    :func:`~lightning_nas.methods.fasterseg.ops.make_fasterseg_op` operators (plain convs and
    BatchNorms), a cell shared by several branches is one module run once.
    :meth:`forward` returns only the main logits, in training and evaluation alike; the
    auxiliary heads (the release's ``heads16`` on the concatenated 1/16 features of the branches
    ending at 1/16 or 1/32, ``heads32`` on the 1/32 branch's last feature), used for the
    release's ``0.2·OHEM(p16) + 0.2·OHEM(p32)`` training loss, run only in :meth:`forward_aux`.

    Args:
        genotype: The genotype, or the path of its YAML file.
        num_classes: Number of output classes (default 19, Cityscapes).
        Fch: Base channel count (12 in FasterSeg).
        aux_heads: Whether to build the auxiliary heads (as the release does in training).
        in_channels: Number of input image channels.

    Raises:
        ConfigError: If an argument is out of range or ``genotype`` (or the file) is not a
            FasterSeg genotype.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> net = FasterSegNetwork("experiments/genotypes/fasterseg_cityscapes.yaml",
        ...                        num_classes=5, Fch=2).eval()
        >>> len(net.cells), net.plan.lasts
        (16, (2, 1))
        >>> tuple(net(torch.randn(1, 3, 67, 99)).shape)
        (1, 5, 67, 99)
    """

    output_stride = 8
    """Output stride of the fused feature the main head predicts from."""

    def __init__(
        self,
        genotype: FasterSegGenotype | str | Path,
        num_classes: int = 19,
        Fch: int = 12,
        aux_heads: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(genotype, str | Path):
            genotype = load(genotype)
        if not isinstance(genotype, FasterSegGenotype):
            raise ConfigError(
                "FasterSegNetwork: expected a FasterSegGenotype or its file, got "
                f"{type(genotype).__name__}"
            )
        check_min_ints(
            "FasterSegNetwork",
            (("num_classes", num_classes, 1), ("Fch", Fch, 1), ("in_channels", in_channels, 1)),
        )
        self.genotype = genotype
        self.num_classes = num_classes
        self.Fch = Fch
        self.plan = plan = fasterseg_plan(genotype, Fch)

        self.stem = make_fasterseg_stem(in_channels, plan.stem)
        self.cells = nn.ModuleList(
            make_fasterseg_op(c.op, c.C_in, c.C_out, c.stride) for c in plan.cells
        )
        self.refines = nn.ModuleList(
            FasterSegRefine(plan.refine_steps(b)) for b in range(len(plan.lasts))
        )
        self.ffm = ConvNorm(*plan.fusion, kernel_size=1)
        self.heads8 = Head(plan.fusion[1], num_classes)
        self.heads16: Head | None = None
        self.heads32: Head | None = None
        if aux_heads and plan.aux16 is not None:
            self.heads16 = Head(plan.aux16, num_classes)
        if aux_heads and plan.aux32 is not None:
            self.heads32 = Head(plan.aux32, num_classes)

    def _trunk(
        self, x: torch.Tensor, stages: dict[str, torch.Tensor]
    ) -> list[list[torch.Tensor | None]]:
        """Run the stem and the cells; return each branch's last feature per scale index."""
        stem = stages["stem"] = self.stem(x)
        branches = len(self.plan.lasts)
        current = [stem] * branches
        outputs: list[list[torch.Tensor | None]] = [[stem, None, None] for _ in range(branches)]
        for spec, cell in zip(self.plan.cells, self.cells):
            y = stages[spec.name] = cell(current[spec.branches[0]])
            for b in spec.branches:
                current[b] = y
                outputs[b][spec.out_index] = y
        return outputs

    def _forward(
        self, x: torch.Tensor, aux: bool
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        stages: dict[str, torch.Tensor] = {}
        outputs = self._trunk(x, stages)
        refined = []
        for b, (refine, last) in enumerate(zip(self.refines, self.plan.lasts)):
            feats = [f for f in outputs[b][: last + 1] if f is not None]
            out = stages[f"refine_b{b}"] = refine(feats[-1], feats[-2::-1])
            refined.append(out)
        fused = stages["ffm"] = self.ffm(torch.cat(refined, dim=1))
        size = x.shape[-2:]
        stages["logits"] = resize(self.heads8(fused), size)
        aux16 = aux32 = None
        if aux and self.heads16 is not None:
            feats16 = [f[1] for f, last in zip(outputs, self.plan.lasts) if last >= 1]
            aux16 = resize(self.heads16(torch.cat([f for f in feats16 if f is not None], 1)), size)
        if aux and self.heads32 is not None:
            out32 = outputs[self.plan.lasts.index(2)][2]
            assert out32 is not None
            aux32 = resize(self.heads32(out32), size)
        return stages, aux16, aux32

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output, in order, for inspection and :mod:`lightning_nas.summary`.

        Returns:
            ``stem`` (stride 8), one entry per cell (:attr:`FasterSegCellPlan.name`),
            ``refine_b<i>`` per branch (stride 8), ``ffm`` and ``logits`` (input size);
            :meth:`forward` returns ``logits``.
        """
        return self._forward(x, aux=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size."""
        return self._forward(x, aux=False)[0]["logits"]

    def forward_aux(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Main and auxiliary logits, each at the input size.

        Returns:
            ``(logits, aux16, aux32)``: ``aux16`` from the 1/16 features (``None`` without
            auxiliary heads or when every branch ends at 1/8), ``aux32`` from the 1/32 branch
            (``None`` without auxiliary heads or a branch ending at 1/32).
        """
        stages, aux16, aux32 = self._forward(x, aux=True)
        return stages["logits"], aux16, aux32


def _scale_sizes(input_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Feature size at scale index 0, 1, 2: ``ceil`` halving from ``ceil(H / 8)``."""
    H, W = input_size
    sizes = [(-(-H // 8), -(-W // 8))]
    for _ in range(2):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def _refine_configs(
    last: int, steps: Sequence[tuple[int, int, int, int]], sizes: Sequence[tuple[int, int]]
) -> list[OpConfig]:
    configs = []
    for s, (c_in, c_mid, c_skip, c_out) in zip(range(last, 0, -1), steps, strict=True):
        configs += [
            OpConfig("fs_convnorm1x1", c_in, c_mid, *sizes[s]),
            OpConfig("fs_up2_concat", c_mid, c_mid + c_skip, *sizes[s - 1], 2),
            OpConfig("fs_convnorm3x3", c_mid + c_skip, c_out, *sizes[s - 1]),
        ]
    return configs


def _tail_configs(
    c8: int, num_branches: int, num_classes: int, input_size: tuple[int, int]
) -> list[OpConfig]:
    h, w = _scale_sizes(input_size)[0]
    configs = []
    if num_branches > 1:
        configs.append(OpConfig("concat", c8, c8 * num_branches, h, w))
    return configs + [
        OpConfig("fs_convnorm1x1", c8 * num_branches, c8 * num_branches, h, w),
        OpConfig("fs_head", c8 * num_branches, num_classes, h, w),
        OpConfig("fs_upsample", num_classes, num_classes, *input_size, 8),
    ]


def fasterseg_latency_configs(
    genotype: FasterSegGenotype,
    num_classes: int,
    input_size: tuple[int, int],
    Fch: int = 12,
    in_channels: int = 3,
) -> list[OpConfig]:
    """What :class:`FasterSegNetwork` runs on one image, as latency-table keys, with repeats.

    Built from :func:`fasterseg_plan`, as the network is: ``fs_stem`` (input size, stride 8;
    ``expansion`` = the width unit ``Fch·r_stem`` only where ``C_out / 8`` is not that unit);
    every cell once (a shared cell once), ``fs_<op>`` at its input size; per branch its
    refinement steps (``fs_convnorm1x1`` at the coarse size, ``fs_up2_concat`` at the fine size
    with stride 2, ``fs_convnorm3x3``); the branches' ``concat`` (several branches),
    ``fs_convnorm1x1`` (fusion) and ``fs_head`` at 1/8; ``fs_upsample`` to the input size.
    :func:`~lightning_nas.latency.measure.build_op` builds each; ``table.total(configs)`` is the
    table estimate of the network's latency.

    Args:
        genotype: The genotype.
        num_classes: Number of output classes.
        input_size: ``(H, W)`` of the input image.
        Fch: Base channel count.
        in_channels: Image channels.

    Returns:
        The configurations, in execution order.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> g = load("experiments/genotypes/fasterseg_cityscapes.yaml")
        >>> configs = fasterseg_latency_configs(g, 19, (1024, 2048))
        >>> configs[0].key
        'fs_stem|Cin=3|Cout=64|H=1024|W=2048|stride=8'
        >>> configs[1].key, len(configs)
        ('fs_conv_2x|Cin=64|Cout=32|H=128|W=256|stride=1', 30)
    """
    plan = fasterseg_plan(genotype, Fch)
    sizes = _scale_sizes(input_size)
    configs = [stem_latency_config(Fch, genotype.stem_head_width[0], input_size, in_channels)]
    for cell in plan.cells:
        h, w = sizes[cell.in_index]
        configs.append(OpConfig(f"fs_{cell.op}", cell.C_in, cell.C_out, h, w, cell.stride))
    for b, last in enumerate(plan.lasts):
        configs += _refine_configs(last, plan.refine_steps(b), sizes)
    return configs + _tail_configs(plan.head[0], len(plan.lasts), num_classes, input_size)


def stem_latency_config(
    Fch: int, width: int, input_size: tuple[int, int], in_channels: int = 3
) -> OpConfig:
    """The ``fs_stem`` entry of a stem of ``width`` twelfths.

    The stem's channels follow from ``C_out`` (width unit ``C_out / 8``) whenever ``Fch · r`` is
    an integer (``Fch = 12``, widths in twelfths); otherwise ``expansion`` names the unit.

    Example:
        >>> stem_latency_config(12, 8, (1024, 2048)).key
        'fs_stem|Cin=3|Cout=64|H=1024|W=2048|stride=8'
    """
    unit = Fch * width / 12
    channels = stem_channels(1, unit)
    exact = stem_channels(1, channels[2] / 8) == channels
    return OpConfig("fs_stem", in_channels, channels[2], *input_size, 8, None if exact else unit)


def head_latency_configs(
    num_classes: int,
    input_size: tuple[int, int],
    Fch: int,
    head_width: int,
    c8: Sequence[int],
    c16: Sequence[int],
) -> list[OpConfig]:
    """Every head configuration of any network with this head width and these skip widths.

    For a search space's latency table: the refinement steps of a branch ending at 1/16 or 1/32
    for every skip width in ``c8`` (1/8) and ``c16`` (1/16), and the concat / fusion / head /
    upsampling tail for 1 to 3 branches, exactly as :func:`fasterseg_latency_configs` writes
    them (without the stem and the cells). Duplicates removed.

    Args:
        num_classes: Number of output classes.
        input_size: ``(H, W)`` of the input image.
        Fch: Base channel count.
        head_width: Head width, in twelfths.
        c8: Possible channels of a branch's last 1/8 feature below its end.
        c16: Possible channels of a branch's last 1/16 feature below its end.

    Returns:
        The configurations.

    Example:
        >>> configs = head_latency_configs(19, (1024, 2048), 12, 8, [32], [64])
        >>> len(configs), configs[0].key
        (15, 'fs_convnorm1x1|Cin=128|Cout=64|H=64|W=128|stride=1')
    """
    r = head_width / 12
    head = (num_filters(8, Fch, r), num_filters(16, Fch, r), num_filters(32, Fch, r))
    sizes = _scale_sizes(input_size)
    configs: dict[str, OpConfig] = {}
    for last in (1, 2):
        for ch8, ch16 in itertools.product(c8, c16):
            for cfg in _refine_configs(last, refine_steps(head, last, (ch8, ch16)), sizes):
                configs.setdefault(cfg.key, cfg)
    for num_branches in range(1, 4):
        for cfg in _tail_configs(head[0], num_branches, num_classes, input_size):
            configs.setdefault(cfg.key, cfg)
    return list(configs.values())
