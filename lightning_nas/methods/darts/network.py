"""The discrete network of a DARTS genotype, with the segmentation head of the search space.

Cells follow ``quark0/darts:cnn/model.py`` (affine BatchNorm, drop-path on every non-identity
op in training); the macro structure (stem, reduction positions, head) is the one of
:class:`~lightning_nas.methods.darts.space.DartsSpace`, so a genotype derived there is retrained
here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.genotypes import load
from lightning_nas.methods.darts.genotype import DartsGenotype
from lightning_nas.methods.darts.ops import make_op
from lightning_nas.ops import FactorizedReduce, Identity, ReLUConvBN, drop_path

__all__ = ["DartsCell", "DartsNetwork", "build_darts_macro", "reduction_layers"]


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells among ``layers`` cells, as DARTS places them.

    Args:
        layers: Number of cells.

    Returns:
        ``(layers // 3, 2 * layers // 3)`` without duplicates, sorted.
    """
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def build_darts_macro(
    in_channels: int,
    C: int,  # noqa: N803
    layers: int,
    stem_multiplier: int,
    stem_stride: int,
    make_cell: Callable[[int, int, int, bool, bool], nn.Module],
) -> tuple[nn.Sequential, nn.ModuleList, int]:
    """The DARTS macro structure shared by the search space and the derived network.

    Stem conv 3×3 (stride ``stem_stride``) to ``stem_multiplier * C`` channels + BN, then
    ``layers`` cells with the channels doubled at each reduction cell (:func:`reduction_layers`).

    Args:
        in_channels: Image channels.
        C: Channels of the first cells.
        layers: Number of cells.
        stem_multiplier: The stem outputs ``stem_multiplier * C`` channels.
        stem_stride: Stride of the stem convolution.
        make_cell: ``(C_prev_prev, C_prev, C, reduction, reduction_prev) -> cell``; the cell has
            a ``multiplier`` attribute (its output has ``multiplier * C`` channels).

    Returns:
        The stem, the cells and the channels of the last cell's output.
    """
    c_curr = stem_multiplier * C
    stem = nn.Sequential(
        nn.Conv2d(in_channels, c_curr, 3, stride=stem_stride, padding=1, bias=False),
        nn.BatchNorm2d(c_curr),
    )
    reductions = reduction_layers(layers)
    c_prev_prev, c_prev, c_curr = c_curr, c_curr, C
    reduction_prev = False
    cells = []
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c_curr *= 2
        cell = make_cell(c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
    return stem, nn.ModuleList(cells), c_prev


class DartsCell(nn.Module):
    """One discrete DARTS cell (``model.py`` ``Cell``).

    Args:
        genotype: The genotype; its ``reduce`` or ``normal`` cell is built.
        C_prev_prev: Channels of the cell's first input (output of the cell two back).
        C_prev: Channels of the cell's second input (output of the previous cell).
        C: Channels of every node of this cell.
        reduction: Whether this is a reduction cell (ops on the inputs use stride 2).
        reduction_prev: Whether the previous cell was a reduction cell (then the first input is
            reduced by a :class:`~lightning_nas.ops.FactorizedReduce`).
    """

    def __init__(
        self,
        genotype: DartsGenotype,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat: tuple[int, ...] = (
            genotype.reduce_concat if reduction else genotype.normal_concat
        )
        self.multiplier = len(self.concat)
        self.steps = len(pairs) // 2
        self.indices: tuple[int, ...] = tuple(j for _, j in pairs)
        self.ops = nn.ModuleList(
            make_op(name, C, 2 if reduction and j < 2 else 1, affine=True) for name, j in pairs
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """Combine the two inputs through the cell's nodes; concat the ``concat`` nodes."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            s = 0
            for k in (2 * i, 2 * i + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                s = s + h
            states.append(s)
        return torch.cat([states[i] for i in self.concat], dim=1)


class DartsNetwork(nn.Module):
    """A DARTS genotype as a segmentation network.

    Stem conv 3×3 (stride ``stem_stride``) + BN to ``stem_multiplier * C`` channels, ``layers``
    cells (reduction cells at ``layers // 3`` and ``2 * layers // 3``, channels doubled at each),
    head ReLU → 1×1 conv (with bias) → bilinear upsampling to the input size.

    Args:
        genotype: The genotype, or the path of its YAML file.
        num_classes: Number of output classes (linked from the DataModule by the CLI; default
            19, Cityscapes).
        in_channels: Number of input image channels.
        C: Channels of the first cells.
        layers: Number of cells (at least 3).
        stem_multiplier: The stem outputs ``stem_multiplier * C`` channels.
        stem_stride: Stride of the stem convolution.
        drop_path_prob: Drop-path probability in training (a callback may change the
            ``drop_path_prob`` attribute during training, as DARTS raises it linearly).

    Raises:
        ValueError: If an argument is out of range.
        TypeError: If ``genotype`` (or the file) is not a DARTS genotype.

    Example:
        >>> import torch
        >>> from lightning_nas.methods.darts.network import DartsNetwork
        >>> _ = torch.manual_seed(0)
        >>> net = DartsNetwork("experiments/genotypes/darts_v2.yaml", num_classes=5, C=4, layers=3)
        >>> tuple(net(torch.randn(2, 3, 32, 32)).shape)
        (2, 5, 32, 32)
    """

    def __init__(
        self,
        genotype: DartsGenotype | str | Path,
        num_classes: int = 19,
        in_channels: int = 3,
        C: int = 8,
        layers: int = 5,
        stem_multiplier: int = 3,
        stem_stride: int = 1,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(genotype, str | Path):
            genotype = load(genotype)
        if not isinstance(genotype, DartsGenotype):
            raise ConfigError(
                f"DartsNetwork: expected a DartsGenotype or its file, got {type(genotype).__name__}"
            )
        check_min_ints(
            "DartsNetwork",
            (
                ("num_classes", num_classes, 1),
                ("in_channels", in_channels, 1),
                ("C", C, 1),
                ("layers", layers, 3),
                ("stem_multiplier", stem_multiplier, 1),
                ("stem_stride", stem_stride, 1),
            ),
        )
        if not 0.0 <= drop_path_prob < 1.0:
            raise ConfigError(
                f"DartsNetwork: drop_path_prob must be in [0, 1), got {drop_path_prob}"
            )

        self.genotype = genotype
        self.num_classes = num_classes
        self.layers = layers
        self.stem_stride = stem_stride
        self.drop_path_prob = drop_path_prob

        self.stem, self.cells, c_prev = build_darts_macro(
            in_channels,
            C,
            layers,
            stem_multiplier,
            stem_stride,
            lambda cpp, cp, c, red, red_prev: DartsCell(genotype, cpp, cp, c, red, red_prev),
        )
        self.head = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_prev, num_classes, 1))

    @property
    def output_stride(self) -> int:
        """Input size divided by the size of the last cell's output."""
        return self.stem_stride * 2 ** len(reduction_layers(self.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
        logits = self.head(s1)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
