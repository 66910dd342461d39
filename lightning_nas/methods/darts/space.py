"""DARTS (Liu, Simonyan & Yang, ICLR 2019) adapted to semantic segmentation.

The supernet is ``quark0/darts:cnn/model_search.py``: a stem, ``layers`` cells with reduction
cells at ``layers // 3`` and ``2 * layers // 3``, every edge of a cell a softmax-weighted
mixture of the eight :data:`~lightning_nas.ops.DARTS_PRIMITIVES`. The classification head is
replaced by a segmentation head (ReLU → 1×1 conv → bilinear upsampling to the input size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES, DartsGenotype
from lightning_nas.methods.darts.latency import DartsLatency
from lightning_nas.methods.darts.network import build_darts_macro, reduction_layers
from lightning_nas.methods.darts.ops import make_op
from lightning_nas.ops import FactorizedReduce, ReLUConvBN
from lightning_nas.spaces.base import SearchSpace

__all__ = ["DartsSpace", "derive_darts_cell"]

_NONE = DARTS_PRIMITIVES.index("none")


def derive_darts_cell(
    weights: torch.Tensor, steps: int, concat: range | tuple[int, ...]
) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    """DARTS ``genotype()._parse`` on one cell's edge weights.

    For intermediate node ``i``, its incoming edges ``j`` are ranked by their strongest
    non-``none`` weight and the two strongest are kept (stable sort: on a tie the lower ``j``
    comes first); each kept edge takes its strongest non-``none`` op (on a tie the first in
    :data:`~lightning_nas.ops.DARTS_PRIMITIVES`). Edges are listed strongest first, as in DARTS.

    Args:
        weights: ``(num_edges, len(DARTS_PRIMITIVES))`` softmax weights, edges ordered node by
            node and, within a node, by input index.
        steps: Number of intermediate nodes.
        concat: State indices concatenated into the cell output.

    Returns:
        The ``(op, input)`` pairs and the concat tuple.
    """
    w = weights.detach().cpu().tolist()
    gene: list[tuple[str, int]] = []
    start = 0
    for i in range(steps):
        n = i + 2
        rows = w[start : start + n]

        def strength(j: int, rows: list[list[float]] = rows) -> float:
            return max(v for k, v in enumerate(rows[j]) if k != _NONE)

        for j in sorted(range(n), key=lambda j: -strength(j))[:2]:
            k_best = max((k for k in range(len(rows[j])) if k != _NONE), key=lambda k: rows[j][k])
            gene.append((DARTS_PRIMITIVES[k_best], j))
        start += n
    return tuple(gene), tuple(concat)


class _MixedOp(nn.Module):
    """Σ_o w_o · o(x) over all primitives; pools are followed by a non-affine BatchNorm."""

    def __init__(self, C: int, stride: int) -> None:
        super().__init__()
        ops = []
        for name in DARTS_PRIMITIVES:
            op = make_op(name, C, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


class _SearchCell(nn.Module):
    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.ops = nn.ModuleList(
            _MixedOp(C, 2 if reduction and j < 2 else 1) for i in range(steps) for j in range(i + 2)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            s = sum(self.ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.multiplier :], dim=1)


class DartsSpace(DartsLatency, SearchSpace):
    """The DARTS supernet with a segmentation head.

    Stem conv 3×3 (stride ``stem_stride``) to ``stem_multiplier * C`` channels + BN; ``layers``
    cells, the ones at ``layers // 3`` and ``2 * layers // 3`` being reduction cells (stride 2,
    channels doubled); head ReLU → 1×1 conv (with bias) to ``num_classes`` on the last cell's
    output, then bilinear upsampling (``align_corners=False``) to the input size. Cell BatchNorms
    are non-affine, as in DARTS' search network. The output stride is ``4 * stem_stride``.

    Args:
        num_classes: Number of output classes.
        in_channels: Number of input image channels.
        C: Channels of the first cells (doubled at each reduction cell).
        layers: Number of cells (at least 3, so there is a normal cell and two reduction cells).
        steps: Intermediate nodes per cell (4 gives DARTS' 14 edges).
        multiplier: Number of last intermediate nodes concatenated into a cell's output.
        stem_multiplier: The stem outputs ``stem_multiplier * C`` channels.
        stem_stride: Stride of the stem convolution (1 as in DARTS on CIFAR; 2 quarters the
            activation memory on large segmentation crops).
        alpha_init_std: The architecture parameters start as ``alpha_init_std * randn``
            (DARTS' code uses 1e-3; 0 gives the uniform start the paper describes).

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> import torch
        >>> from lightning_nas.methods.darts.space import DartsSpace
        >>> _ = torch.manual_seed(0)
        >>> space = DartsSpace(num_classes=5, C=4, layers=3)
        >>> tuple(space(torch.randn(2, 3, 32, 32)).shape)
        (2, 5, 32, 32)
        >>> {k: tuple(v.shape) for k, v in space.arch_parameters().items()}
        {'alphas_normal': (14, 8), 'alphas_reduce': (14, 8)}
        >>> space.output_stride
        4
        >>> space.derive().normal_concat
        (2, 3, 4, 5)
    """

    def __init__(
        self,
        num_classes: int = 19,
        in_channels: int = 3,
        C: int = 8,
        layers: int = 5,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        stem_stride: int = 1,
        alpha_init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        check_min_ints(
            "DartsSpace",
            (
                ("num_classes", num_classes, 1),
                ("in_channels", in_channels, 1),
                ("C", C, 1),
                ("layers", layers, 3),
                ("steps", steps, 1),
                ("multiplier", multiplier, 1),
                ("stem_multiplier", stem_multiplier, 1),
                ("stem_stride", stem_stride, 1),
            ),
        )
        if multiplier > steps:
            raise ConfigError(
                f"DartsSpace: multiplier ({multiplier}) must be <= steps ({steps}): the output "
                "concatenates the last `multiplier` intermediate nodes"
            )
        if not alpha_init_std >= 0:
            raise ConfigError(f"DartsSpace: alpha_init_std must be >= 0, got {alpha_init_std!r}")

        self.num_classes = num_classes
        self.in_channels = in_channels
        self.C = C
        self.layers = layers
        self.steps = steps
        self.multiplier = multiplier
        self.stem_multiplier = stem_multiplier
        self.stem_stride = stem_stride

        self.stem, self.cells, c_prev = build_darts_macro(
            in_channels,
            C,
            layers,
            stem_multiplier,
            stem_stride,
            lambda cpp, cp, c, red, red_prev: _SearchCell(
                steps, multiplier, cpp, cp, c, red, red_prev
            ),
        )
        self.head = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_prev, num_classes, 1))

        num_edges = sum(i + 2 for i in range(steps))
        num_ops = len(DARTS_PRIMITIVES)
        self.alphas_normal = nn.Parameter(alpha_init_std * torch.randn(num_edges, num_ops))
        self.alphas_reduce = nn.Parameter(alpha_init_std * torch.randn(num_edges, num_ops))

    @property
    def output_stride(self) -> int:
        """Input size divided by the size of the last cell's output."""
        return self.stem_stride * 2 ** len(reduction_layers(self.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size."""
        weights_normal = F.softmax(self.alphas_normal, dim=-1)
        weights_reduce = F.softmax(self.alphas_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            weights = weights_reduce if cell.reduction else weights_normal
            s0, s1 = s1, cell(s0, s1, weights)
        logits = self.head(s1)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def arch_parameters(self) -> dict[str, nn.Parameter]:
        """``{"alphas_normal": ..., "alphas_reduce": ...}``, each ``(num_edges, 8)``."""
        return {"alphas_normal": self.alphas_normal, "alphas_reduce": self.alphas_reduce}

    def arch_labels(self) -> dict[str, tuple[list[str], list[str]]]:
        """Rows ``<j>-><i>`` (edge from state j into intermediate node i), columns the ops."""
        rows = [f"{j}->{i + 2}" for i in range(self.steps) for j in range(i + 2)]
        cols = list(DARTS_PRIMITIVES)
        return {"alphas_normal": (rows, cols), "alphas_reduce": (rows, cols)}

    def derive(self) -> DartsGenotype:
        """The DARTS genotype of the current α (DARTS ``_parse``; ``none`` is never chosen)."""
        concat = range(2 + self.steps - self.multiplier, 2 + self.steps)
        normal, normal_concat = derive_darts_cell(
            F.softmax(self.alphas_normal.detach(), dim=-1), self.steps, concat
        )
        reduce, reduce_concat = derive_darts_cell(
            F.softmax(self.alphas_reduce.detach(), dim=-1), self.steps, concat
        )
        return DartsGenotype(
            normal=normal, normal_concat=normal_concat, reduce=reduce, reduce_concat=reduce_concat
        )

    def derived_statistics(self) -> dict[str, float]:
        """Number of ``skip_connect`` edges in the derived normal and reduction cells."""
        genotype = self.derive()
        return {
            "skip_connections_normal": float(genotype.num_skip_connections("normal")),
            "skip_connections_reduce": float(genotype.num_skip_connections("reduce")),
        }
