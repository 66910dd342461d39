"""The discrete network of an Auto-DeepLab genotype: cells along a path, then DeepLabv3+.

Follows the official TensorFlow release (``tensorflow/models``, ``research/deeplab/core/``:
``nas_network.py`` ``_build_nas_base`` / ``hnasnet``, ``nas_cell.py`` ``NASBaseCell``) and its
DeepLabv3+ head (``model.py``: ASPP with non-separable atrous convs, decoder on the stride-4
feature). With the published genotype (``experiments/genotypes/autodeeplab_cityscapes.yaml``)
and ``filter_multiplier`` 20 / 32 / 48 it has the paper's 10.15M / 21.62M / 44.42M parameters
(Auto-DeepLab-S / M / L, Table 2).

Resizing: every level ``p`` has one spatial size, ``ceil(size_{p-1} / 2)`` starting from the stem
output (stride 4). A cell moving to a coarser level halves its input in the ops that read
``h[l-1]`` or ``h[l-2]`` (stride 2, ``ceil(H / 2)``); a cell moving to a finer level first
resizes ``h[l-1]`` bilinearly to the finer level's size. The release computes that size as
``2·H - 1``, which is the same thing for inputs of size ``32·k + 1`` (its crops are 769 × 769 and
its evaluation size 1025 × 2049); naming the level's size makes any input size work. Bilinear
resizes use ``align_corners=True``, as DeepLab's ``resize_bilinear`` does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.genotypes import load
from lightning_nas.latency.config import OpConfig
from lightning_nas.methods.autodeeplab.genotype import AutoDeepLabGenotype
from lightning_nas.methods.autodeeplab.ops import make_autodeeplab_op
from lightning_nas.ops import Identity, ReLUConvBN, drop_path

__all__ = [
    "AutoDeepLabASPP",
    "AutoDeepLabCell",
    "AutoDeepLabDecoder",
    "AutoDeepLabNetwork",
    "aspp_rates",
    "autodeeplab_cell_latency_configs",
    "autodeeplab_edge_latency_config",
    "autodeeplab_head_latency_configs",
    "autodeeplab_latency_configs",
    "autodeeplab_latency_sizes",
    "autodeeplab_stem_latency_config",
    "low_level_cell",
]

STEM_STRIDE = 4
"""Output stride of the stem (the level-0 stride)."""


def _resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def _conv_bn_relu(C_in: int, C_out: int, kernel_size: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(C_in, C_out, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(C_out),
        nn.ReLU(inplace=False),
    )


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """DeepLab's ASPP atrous rates for a feature map at ``output_stride``.

    ``(6, 12, 18)`` at output stride 16, scaled in inverse proportion to the stride (``(12, 24,
    36)`` at 8, ``(3, 6, 9)`` at 32), as the DeepLab papers set them.

    Args:
        output_stride: Input size divided by the feature map's size (a power of two >= 2).

    Returns:
        The three rates (at least 1 each).

    Example:
        >>> aspp_rates(16), aspp_rates(8), aspp_rates(4)
        ((6, 12, 18), (12, 24, 36), (24, 48, 72))
    """
    r1, r2, r3 = (max(1, round(r * 16 / output_stride)) for r in (6, 12, 18))
    return r1, r2, r3


def low_level_cell(path: tuple[int, ...] | list[int]) -> int | None:
    """The cell whose output feeds the decoder (stride 4), as the release chooses it.

    The release's decoder end points for its path are ``Cell_2`` (stride 4), ``Cell_5`` (8) and
    ``Cell_7`` (16): in each case the last cell at that level before the path first reaches its
    coarsest level. This function applies that rule to level 0.

    Args:
        path: The level of each layer.

    Returns:
        The index of the last level-0 cell at or before the first cell at ``max(path)``, or
        ``None`` when there is none (the decoder then reads the stem output).

    Example:
        >>> low_level_cell([0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1])
        2
        >>> low_level_cell([1, 2, 1, 0, 1, 2]) is None
        True
    """
    first_deepest = list(path).index(max(path))
    at_level_0 = [i for i in range(first_deepest + 1) if path[i] == 0]
    return at_level_0[-1] if at_level_0 else None


class AutoDeepLabCell(nn.Module):
    """One discrete Auto-DeepLab cell (the release's ``NASBaseCell``).

    ``h[l-1]`` goes through ReLU → 1×1 conv → BN to ``filter_size`` channels. ``h[l-2]`` is resized
    bilinearly to ``h[l-1]``'s size when it differs, then through ReLU → 1×1 conv → BN when its
    channel count is not ``filter_size``. Each block sums two ops of
    :func:`~lightning_nas.ops.make_autodeeplab_op`; an op reading ``h[l-1]`` or ``h[l-2]`` uses
    ``stride`` (2 when the cell moves to a coarser level), an op reading a block uses stride 1.
    The output concatenates the last ``block_multiplier`` blocks.

    Args:
        genotype: The genotype (its ``cell`` is built).
        C_prev_prev: Channels of ``h[l-2]``.
        C_prev: Channels of ``h[l-1]``.
        filter_size: Channels of every block.
        stride: 1, or 2 when the cell halves the resolution.
        block_multiplier: Number of last blocks concatenated into the output (default: all).

    Raises:
        ConfigError: If ``stride`` or ``block_multiplier`` is out of range.
    """

    def __init__(
        self,
        genotype: AutoDeepLabGenotype,
        C_prev_prev: int,
        C_prev: int,
        filter_size: int,
        stride: int = 1,
        block_multiplier: int | None = None,
    ) -> None:
        super().__init__()
        blocks = genotype.num_blocks
        block_multiplier = blocks if block_multiplier is None else block_multiplier
        if not 1 <= block_multiplier <= blocks:
            raise ConfigError(
                f"AutoDeepLabCell: block_multiplier must be in 1..{blocks}, got {block_multiplier}"
            )
        if stride not in (1, 2):
            raise ConfigError(f"AutoDeepLabCell: stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.blocks = blocks
        self.block_multiplier = block_multiplier
        self.out_channels = block_multiplier * filter_size
        if C_prev_prev == filter_size:
            self.preprocess0: nn.Module = Identity()
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, filter_size, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, filter_size, 1, 1, 0)
        self.indices: tuple[int, ...] = tuple(j for _, j in genotype.cell)
        self.ops = nn.ModuleList(
            make_autodeeplab_op(name, filter_size, stride if j < 2 else 1, affine=True)
            for name, j in genotype.cell
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """Combine ``s0 = h[l-2]`` and ``s1 = h[l-1]``; drop op outputs with ``drop_prob``."""
        states = [self.preprocess0(_resize(s0, s1.shape[-2:])), self.preprocess1(s1)]
        for b in range(self.blocks):
            out = 0
            for k in (2 * b, 2 * b + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                out = out + h
            states.append(out)
        return torch.cat(states[-self.block_multiplier :], dim=1)


class AutoDeepLabASPP(nn.Module):
    """DeepLabv3+ atrous spatial pyramid pooling (non-separable convs, as the release's model).

    Five branches of ``channels`` filters, each conv → BN → ReLU: image pooling (global average →
    1×1 conv, broadcast back), a 1×1 conv and three 3×3 atrous convs at ``rates``. Their
    concatenation (in this order, as DeepLab's ``model.py``) is projected by a 1×1 conv → BN →
    ReLU → dropout 0.1 (DeepLab's keep probability 0.9).

    Args:
        in_channels: Channels of the input feature.
        channels: Filters of every branch and of the projection.
        rates: The three atrous rates.
    """

    def __init__(self, in_channels: int, channels: int, rates: tuple[int, int, int]) -> None:
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, channels, 1)]
            + [_conv_bn_relu(in_channels, channels, 3, dilation=r) for r in self.rates]
        )
        self.image_pooling = _conv_bn_relu(in_channels, channels, 1)
        self.project = nn.Sequential(
            *_conv_bn_relu((len(self.rates) + 2) * channels, channels, 1), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` to ``(N, channels, H, W)``."""
        pooled = self.image_pooling(x.mean(dim=(2, 3), keepdim=True))
        outs = [pooled.expand(-1, -1, *x.shape[-2:])] + [branch(x) for branch in self.branches]
        return self.project(torch.cat(outs, dim=1))


class AutoDeepLabDecoder(nn.Module):
    """DeepLabv3+ decoder: fuse the ASPP output with a stride-4 feature, predict logits.

    The low-level feature goes through 1×1 conv → BN → ReLU to ``low_level_channels``; the ASPP
    output is resized to its size and concatenated in front of it; two 3×3 conv → BN → ReLU of
    ``channels`` filters (non-separable) and a 1×1 conv with bias give the logits.

    Args:
        in_channels: Channels of the ASPP output.
        low_level_in_channels: Channels of the low-level feature.
        num_classes: Number of output classes.
        channels: Filters of the two 3×3 convs.
        low_level_channels: Filters of the low-level projection.
    """

    def __init__(
        self,
        in_channels: int,
        low_level_in_channels: int,
        num_classes: int,
        channels: int = 256,
        low_level_channels: int = 48,
    ) -> None:
        super().__init__()
        self.project = _conv_bn_relu(low_level_in_channels, low_level_channels, 1)
        self.fuse = nn.Sequential(
            _conv_bn_relu(in_channels + low_level_channels, channels, 3),
            _conv_bn_relu(channels, channels, 3),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def features(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """The fused decoder feature (before the classifier) at the low-level feature's size."""
        low_level = self.project(low_level)
        return self.fuse(torch.cat([_resize(x, low_level.shape[-2:]), low_level], dim=1))

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """Logits at the low-level feature's size."""
        return self.classifier(self.features(x, low_level))


class AutoDeepLabNetwork(nn.Module):
    """An Auto-DeepLab genotype as a DeepLabv3+ segmentation network (the release's ``hnasnet``).

    **Stem:** conv 3×3 64 stride 2 → BN → ReLU → conv 3×3 64 → BN (``h[-2]`` of cell 0) → ReLU →
    conv 3×3 128 stride 2 → BN (``h[-1]``, stride 4). **Cells:** layer ``l`` at level
    ``p = genotype.path[l]`` (output stride ``4·2^p``) has ``filter_size = filter_multiplier·2^p``
    and outputs ``block_multiplier·filter_size`` channels (see :class:`AutoDeepLabCell` and the
    module docstring for the resizing). **Head:** ReLU on the last cell's output →
    :class:`AutoDeepLabASPP` (rates :func:`aspp_rates` of the last cell's stride) →
    :class:`AutoDeepLabDecoder` on the stride-4 feature chosen by :func:`low_level_cell` (the
    published path: ``cell_2``) → bilinear upsampling to the input size. Convs have no bias
    except the logits conv; every BN is affine. BatchNorm keeps PyTorch's defaults (the release
    uses ε 1e-3 and a moving-average decay of 0.9997, tuned for 1.5M iterations). The image
    pooling branch normalises one value per channel and sample: train with batches of 2 or more.

    Scheduled drop path: in training, the output of every op except the identity is dropped with
    probability ``drop_path_prob·(l + 1)/L`` in layer ``l`` of ``L`` (the release's per-layer
    scaling); a callback may raise the ``drop_path_prob`` attribute over training, as the release
    ramps it with the training step.

    Args:
        genotype: The genotype, or the path of its YAML file.
        num_classes: Number of output classes (linked from the DataModule by the CLI; default
            19, Cityscapes).
        in_channels: Number of input image channels.
        filter_multiplier: F, the filters of a level-0 block (the release's
            ``nas_stem_output_num_conv_filters``): 20 / 32 / 48 for Auto-DeepLab-S / M / L.
        block_multiplier: Number of last blocks concatenated into a cell's output (default: all
            blocks of the genotype's cell, 5 for the published one).
        aspp_channels: Filters of every ASPP branch and of its projection.
        decoder_channels: Filters of the decoder's two 3×3 convs.
        low_level_channels: Filters of the decoder's projection of the stride-4 feature.
        drop_path_prob: Maximal drop-path probability (of the last layer), in ``[0, 1)``.

    Raises:
        ConfigError: If an argument is out of range, ``genotype`` (or the file) is not an
            Auto-DeepLab genotype, or its ``strides`` do not start at 4.

    Example:
        >>> import torch
        >>> from lightning_nas.methods.autodeeplab.network import AutoDeepLabNetwork
        >>> _ = torch.manual_seed(0)
        >>> net = AutoDeepLabNetwork(
        ...     "experiments/genotypes/autodeeplab_cityscapes.yaml", num_classes=5,
        ...     filter_multiplier=2, aspp_channels=8, decoder_channels=8, low_level_channels=4,
        ... )
        >>> net.cell_channels, net.output_stride, net.low_level_cell
        ((10, 10, 10, 20, 40, 20, 40, 40, 80, 80, 40, 20), 8, 2)
        >>> tuple(net.eval()(torch.randn(1, 3, 65, 65)).shape)
        (1, 5, 65, 65)
    """

    def __init__(
        self,
        genotype: AutoDeepLabGenotype | str | Path,
        num_classes: int = 19,
        in_channels: int = 3,
        filter_multiplier: int = 20,
        block_multiplier: int | None = None,
        aspp_channels: int = 256,
        decoder_channels: int = 256,
        low_level_channels: int = 48,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(genotype, str | Path):
            genotype = load(genotype)
        if not isinstance(genotype, AutoDeepLabGenotype):
            raise ConfigError(
                "AutoDeepLabNetwork: expected an AutoDeepLabGenotype or its file, got "
                f"{type(genotype).__name__}"
            )
        if genotype.strides[0] != STEM_STRIDE:
            raise ConfigError(
                f"AutoDeepLabNetwork: genotype strides {list(genotype.strides)} must start at "
                f"{STEM_STRIDE} (the stem's output stride)"
            )
        blocks = genotype.num_blocks
        if block_multiplier is None:
            block_multiplier = blocks
        check_min_ints(
            "AutoDeepLabNetwork",
            (
                ("num_classes", num_classes, 1),
                ("in_channels", in_channels, 1),
                ("filter_multiplier", filter_multiplier, 1),
                ("block_multiplier", block_multiplier, 1),
                ("aspp_channels", aspp_channels, 1),
                ("decoder_channels", decoder_channels, 1),
                ("low_level_channels", low_level_channels, 1),
            ),
        )
        if block_multiplier > blocks:
            raise ConfigError(
                f"AutoDeepLabNetwork: block_multiplier must be <= {blocks} (the cell's blocks), "
                f"got {block_multiplier}"
            )
        if not 0.0 <= drop_path_prob < 1.0:
            raise ConfigError(
                f"AutoDeepLabNetwork: drop_path_prob must be in [0, 1), got {drop_path_prob}"
            )

        self.genotype = genotype
        self.num_classes = num_classes
        self.filter_multiplier = filter_multiplier
        self.block_multiplier = block_multiplier
        self.drop_path_prob = drop_path_prob
        self.path: tuple[int, ...] = tuple(genotype.path)

        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=False),
            nn.Conv2d(64, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(128),
        )
        c_prev_prev, c_prev, previous_level = 64, 128, 0
        cells = []
        for level in self.path:
            cell = AutoDeepLabCell(
                genotype,
                c_prev_prev,
                c_prev,
                filter_multiplier * 2**level,
                stride=2 if level > previous_level else 1,
                block_multiplier=block_multiplier,
            )
            cells.append(cell)
            c_prev_prev, c_prev, previous_level = c_prev, cell.out_channels, level
        self.cells = nn.ModuleList(cells)
        self.cell_channels: tuple[int, ...] = tuple(c.out_channels for c in cells)
        self.low_level_cell = low_level_cell(self.path)
        low_channels = (
            128 if self.low_level_cell is None else self.cell_channels[self.low_level_cell]
        )
        self.aspp = AutoDeepLabASPP(c_prev, aspp_channels, aspp_rates(self.output_stride))
        self.decoder = AutoDeepLabDecoder(
            aspp_channels, low_channels, num_classes, decoder_channels, low_level_channels
        )

    @property
    def output_stride(self) -> int:
        """Output stride of the last cell (the ASPP input)."""
        return STEM_STRIDE * 2 ** self.path[-1]

    @property
    def cell_strides(self) -> tuple[int, ...]:
        """Output stride of each cell along the path."""
        return tuple(STEM_STRIDE * 2**level for level in self.path)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output, in order, for inspection and :mod:`lightning_nas.summary`.

        Returns:
            ``stem`` (``h[-1]``, stride 4), ``cell_0`` … ``cell_{L-1}``, ``aspp`` (at the last
            cell's stride), ``decoder`` (the fused stride-4 feature) and ``logits`` (at the input
            size); :meth:`forward` returns ``logits``.
        """
        out: dict[str, torch.Tensor] = {}
        s0 = self.stem0(x)
        s1 = out["stem"] = self.stem1(s0)
        sizes = [tuple(s1.shape[-2:])]
        for _ in range(max(self.path)):
            h, w = sizes[-1]
            sizes.append(((h + 1) // 2, (w + 1) // 2))
        num_cells = len(self.cells)
        for i, (cell, level) in enumerate(zip(self.cells, self.path)):
            # Moving finer: h[l-1] is resized before the cell; h[l-2] stays the raw output of
            # cell l-2 (the cell resizes it to h[l-1]'s size), as in the release.
            prev = _resize(s1, sizes[level]) if level < (self.path[i - 1] if i else 0) else s1
            drop_prob = self.drop_path_prob * (i + 1) / num_cells
            s0, s1 = s1, cell(s0, prev, drop_prob)
            out[f"cell_{i}"] = s1
        low = out["stem" if self.low_level_cell is None else f"cell_{self.low_level_cell}"]
        out["aspp"] = self.aspp(F.relu(s1))
        out["decoder"] = self.decoder.features(out["aspp"], low)
        out["logits"] = _resize(self.decoder.classifier(out["decoder"]), x.shape[-2:])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size."""
        return self.forward_stages(x)["logits"]


# ----------------------------------------------------------------------------- latency
STEM_CHANNELS = (64, 128)
"""Channels of :class:`AutoDeepLabNetwork`'s ``stem0`` (``h[-2]``) and ``stem1`` (``h[-1]``)."""


def autodeeplab_latency_sizes(
    input_size: tuple[int, int], levels: int
) -> tuple[tuple[int, int], ...]:
    """The spatial sizes of :class:`AutoDeepLabNetwork`'s features, for latency configurations.

    Entry 0 is ``stem0``'s output (stride 2, "level -1"), entry ``k + 1`` level ``k`` (stride
    ``4 · 2^k``), each ``ceil`` half of the one before, as the network computes them.

    Example:
        >>> autodeeplab_latency_sizes((65, 33), 3)
        ((33, 17), (17, 9), (9, 5), (5, 3))
    """
    h, w = (-(-input_size[0] // 2), -(-input_size[1] // 2))
    sizes = [(h, w)]
    for _ in range(levels):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return tuple(sizes)


def autodeeplab_stem_latency_config(input_size: tuple[int, int], in_channels: int = 3) -> OpConfig:
    """The ``adl_stem`` entry: both parts of :class:`AutoDeepLabNetwork`'s stem (stride 4).

    Example:
        >>> autodeeplab_stem_latency_config((65, 33)).key
        'adl_stem|Cin=3|Cout=128|H=65|W=33|stride=4'
    """
    return OpConfig("adl_stem", in_channels, STEM_CHANNELS[1], *input_size, stride=STEM_STRIDE)


def _resize_configs(
    channels: int, sizes: tuple[tuple[int, int], ...], source: int, target: int
) -> list[OpConfig]:
    """The bilinear resize of a feature from level ``source`` to level ``target`` (or none)."""
    src, dst = sizes[source + 1], sizes[target + 1]
    if src == dst:  # the network skips a resize to the same size (tiny maps)
        return []
    if target > source:
        return [OpConfig("adl_downsample", channels, channels, *src, stride=2 ** (target - source))]
    return [OpConfig("adl_upsample", channels, channels, *dst, stride=2 ** (source - target))]


def autodeeplab_cell_latency_configs(
    prev_prev: tuple[int, int],
    prev: tuple[int, int],
    level: int,
    sizes: tuple[tuple[int, int], ...],
    filter_multiplier: int,
    blocks: int,
    block_multiplier: int,
) -> list[OpConfig]:
    """The fixed parts of one :class:`AutoDeepLabCell` in the network, without its ``2·B`` ops.

    In execution order: the network's resize of ``h[l-1]`` when the cell moves to a finer level
    (``adl_upsample``), the resize of ``h[l-2]`` to the size ``h[l-1]`` then has
    (``adl_upsample`` / ``adl_downsample``), the two ``relu_conv1x1_bn`` preprocess ops (the one
    of ``h[l-2]`` only when its channels differ from ``filter_size``), ``2·blocks`` ``add``s (a
    block computes ``(0 + h1) + h2``) and the ``concat`` of the last ``block_multiplier``
    blocks. Resizes between equal sizes are left out, as the network skips them.

    Args:
        prev_prev: ``(channels, level)`` of ``h[l-2]``; level -1 is ``stem0``'s output.
        prev: ``(channels, level)`` of ``h[l-1]``.
        level: The cell's level.
        sizes: :func:`autodeeplab_latency_sizes` (covering ``level``).
        filter_multiplier: F.
        blocks: Blocks of the cell.
        block_multiplier: Blocks concatenated into the output.

    Returns:
        The configurations.
    """
    (c_pp, level_pp), (c_p, level_p) = prev_prev, prev
    filter_size = filter_multiplier * 2**level
    in_level = min(level_p, level)  # where h[l-1] is when the cell reads it
    configs = _resize_configs(c_p, sizes, level_p, level) if level < level_p else []
    configs += _resize_configs(c_pp, sizes, level_pp, in_level)
    size = sizes[in_level + 1]
    if c_pp != filter_size:
        configs.append(OpConfig("relu_conv1x1_bn", c_pp, filter_size, *size))
    configs.append(OpConfig("relu_conv1x1_bn", c_p, filter_size, *size))
    out = sizes[level + 1]
    configs += [OpConfig("add", filter_size, filter_size, *out)] * (2 * blocks)
    configs.append(OpConfig("concat", filter_size, block_multiplier * filter_size, *out))
    return configs


def autodeeplab_edge_latency_config(
    op: str,
    j: int,
    prev_level: int,
    level: int,
    sizes: tuple[tuple[int, int], ...],
    filter_multiplier: int,
) -> OpConfig:
    """The configuration of ``op`` reading state ``j`` in a cell at ``level`` after ``prev_level``.

    States 0 and 1 (``h[l-2]``, ``h[l-1]``, preprocessed) are at ``h[l-1]``'s size as the cell
    reads it; their ops have stride 2 when the cell moves to a coarser level. Blocks (``j >= 2``)
    are at the cell's level, stride 1. Channels: ``filter_multiplier · 2^level``.

    Example:
        >>> sizes = autodeeplab_latency_sizes((64, 64), 2)
        >>> autodeeplab_edge_latency_config("sep_conv_3x3", 1, 0, 1, sizes, 4).key
        'sep_conv_3x3|Cin=8|Cout=8|H=16|W=16|stride=2'
    """
    C = filter_multiplier * 2**level
    if j < 2:
        in_level, stride = min(prev_level, level), 2 if level > prev_level else 1
    else:
        in_level, stride = level, 1
    return OpConfig(op, C, C, *sizes[in_level + 1], stride=stride)


def autodeeplab_head_latency_configs(
    level: int,
    in_channels: int,
    low_level_in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    sizes: tuple[tuple[int, int], ...],
    aspp_channels: int = 256,
    decoder_channels: int = 256,
    low_level_channels: int = 48,
) -> list[OpConfig]:
    """The head of :class:`AutoDeepLabNetwork` after a last cell at ``level``, in execution order.

    ``adl_aspp`` (ReLU → :class:`AutoDeepLabASPP`, ``stride`` = the feature's output stride,
    which sets the rates), the decoder's ``conv1x1_bn_relu`` projection of the stride-4 feature,
    the ``adl_upsample`` of the ASPP output to stride 4 (not at level 0), ``concat2``, two
    ``conv3x3_bn_relu``, the ``conv1x1`` classifier and the ``adl_upsample`` to the input size.

    Args:
        level: Level of the last cell.
        in_channels: Channels of the last cell's output.
        low_level_in_channels: Channels of the decoder's stride-4 feature (128: the stem).
        num_classes: Number of output classes.
        input_size: ``(H, W)`` of the input image.
        sizes: :func:`autodeeplab_latency_sizes` of ``input_size`` (covering ``level``).
        aspp_channels: As :class:`AutoDeepLabNetwork`.
        decoder_channels: As :class:`AutoDeepLabNetwork`.
        low_level_channels: As :class:`AutoDeepLabNetwork`.

    Returns:
        The configurations.
    """
    fused = aspp_channels + low_level_channels
    low = sizes[1]
    configs = [
        OpConfig("adl_aspp", in_channels, aspp_channels, *sizes[level + 1], STEM_STRIDE * 2**level),
        OpConfig("conv1x1_bn_relu", low_level_in_channels, low_level_channels, *low),
        *_resize_configs(aspp_channels, sizes, level, 0),
        OpConfig("concat2", aspp_channels, fused, *low),
        OpConfig("conv3x3_bn_relu", fused, decoder_channels, *low),
        OpConfig("conv3x3_bn_relu", decoder_channels, decoder_channels, *low),
        OpConfig("conv1x1", decoder_channels, num_classes, *low),
    ]
    if low != tuple(input_size):
        configs.append(OpConfig("adl_upsample", num_classes, num_classes, *input_size, STEM_STRIDE))
    return configs


def autodeeplab_latency_configs(
    genotype: AutoDeepLabGenotype,
    num_classes: int,
    input_size: tuple[int, int],
    filter_multiplier: int = 20,
    block_multiplier: int | None = None,
    in_channels: int = 3,
    aspp_channels: int = 256,
    decoder_channels: int = 256,
    low_level_channels: int = 48,
) -> list[OpConfig]:
    """What :class:`AutoDeepLabNetwork` runs on one image, as latency-table keys, with repeats.

    The ``adl_stem`` (both stem parts, input size, stride 4); per cell its fixed parts
    (:func:`autodeeplab_cell_latency_configs`) and its ``2·B`` ops
    (:func:`autodeeplab_edge_latency_config`); the head
    (:func:`autodeeplab_head_latency_configs`, the stride-4 feature chosen by
    :func:`low_level_cell`). :func:`~lightning_nas.latency.measure.build_op` builds each;
    ``table.total(configs)`` is the table estimate of the network's latency. The arguments are
    those of :class:`AutoDeepLabNetwork`.

    Example:
        >>> g = load("experiments/genotypes/autodeeplab_cityscapes.yaml")
        >>> configs = autodeeplab_latency_configs(g, 19, (1025, 2049))
        >>> configs[0].key, len(configs)
        ('adl_stem|Cin=3|Cout=128|H=1025|W=2049|stride=4', 295)
    """
    path = tuple(genotype.path)
    blocks = genotype.num_blocks
    block_multiplier = blocks if block_multiplier is None else block_multiplier
    sizes = autodeeplab_latency_sizes(input_size, max(path) + 1)
    c_stem0, c_stem1 = STEM_CHANNELS
    configs = [autodeeplab_stem_latency_config(input_size, in_channels)]
    prev_prev, prev = (c_stem0, -1), (c_stem1, 0)
    for level in path:
        configs += autodeeplab_cell_latency_configs(
            prev_prev, prev, level, sizes, filter_multiplier, blocks, block_multiplier
        )
        configs += [
            autodeeplab_edge_latency_config(op, j, prev[1], level, sizes, filter_multiplier)
            for op, j in genotype.cell
        ]
        prev_prev, prev = prev, (block_multiplier * filter_multiplier * 2**level, level)
    low = low_level_cell(path)
    low_channels = c_stem1 if low is None else block_multiplier * filter_multiplier
    return configs + autodeeplab_head_latency_configs(
        path[-1],
        prev[0],
        low_channels,
        num_classes,
        input_size,
        sizes,
        aspp_channels,
        decoder_channels,
        low_level_channels,
    )
