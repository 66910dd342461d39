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
from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.table import LatencyTable
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES, DartsGenotype
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


class DartsSpace(SearchSpace):
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

    # ----------------------------------------------------------------- latency
    def _latency_layout(
        self, input_size: tuple[int, int], cells: dict[bool, tuple[int, int]] | None = None
    ) -> tuple[list[OpConfig], list[tuple[bool, int, tuple[int, int], tuple[int, int]]]]:
        """The fixed op configurations and, per cell, ``(reduction, C, input size, output size)``.

        ``cells`` maps ``reduction`` to the cell's ``(steps, multiplier)`` (default: the space's).
        Fixed configurations are listed as often as the network runs them: the stem, per cell the
        two preprocess ops, two ``add`` per node (the derived cell computes ``(0 + h1) + h2``) and
        the concat, then the head (ReLU → 1×1 conv, bilinear upsampling to the input size).
        """
        if (
            not isinstance(input_size, tuple | list)
            or len(input_size) != 2
            or not all(isinstance(v, int) and v >= 1 for v in input_size)
        ):
            raise ConfigError(f"DartsSpace: input_size must be (H, W), got {input_size!r}")
        H, W = input_size
        spec = cells or {False: (self.steps, self.multiplier), True: (self.steps, self.multiplier)}

        def down(size: tuple[int, int], s: int) -> tuple[int, int]:
            return -(-size[0] // s), -(-size[1] // s)

        c_stem = self.stem_multiplier * self.C
        fixed = [OpConfig("conv3x3_bn", self.in_channels, c_stem, H, W, self.stem_stride)]
        size_pp = size_p = down((H, W), self.stem_stride)
        c_pp = c_p = c_stem
        c = self.C
        reductions = reduction_layers(self.layers)
        reduction_prev = False
        layout = []
        for i in range(self.layers):
            reduction = i in reductions
            if reduction:
                c *= 2
            steps, multiplier = spec[reduction]
            if reduction_prev:
                fixed.append(OpConfig("factorized_reduce", c_pp, c, *size_pp, stride=2))
            else:
                fixed.append(OpConfig("relu_conv1x1_bn", c_pp, c, *size_pp))
            fixed.append(OpConfig("relu_conv1x1_bn", c_p, c, *size_p))
            out = down(size_p, 2) if reduction else size_p
            fixed += [OpConfig("add", c, c, *out)] * (2 * steps)
            fixed.append(OpConfig("concat", c, multiplier * c, *out))
            layout.append((reduction, c, size_p, out))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c
            size_pp, size_p = size_p, out
        fixed.append(OpConfig("relu_conv1x1", c_p, self.num_classes, *size_p))
        fixed.append(
            OpConfig(
                "bilinear_upsample", self.num_classes, self.num_classes, H, W, self.output_stride
            )
        )
        return fixed, layout

    @staticmethod
    def _edge_config(
        op: str, j: int, cell: tuple[bool, int, tuple[int, int], tuple[int, int]]
    ) -> OpConfig:
        """Configuration of ``op`` on the edge from state ``j`` in ``cell``."""
        reduction, c, size_in, size_out = cell
        stride = 2 if reduction and j < 2 else 1
        return OpConfig(op, c, c, *(size_in if j < 2 else size_out), stride=stride)

    def latency_configs(self, input_size: tuple[int, int]) -> list[OpConfig]:
        """Every configuration a latency table needs for this space at ``input_size`` ``(H, W)``.

        The fixed parts (stem, preprocess, node sums, concat, head) and every candidate operation
        but ``none`` on every edge of every cell, without repeats. Every derived network of this
        space is covered, so :meth:`derived_latency` never misses an entry.

        Example:
            >>> space = DartsSpace(num_classes=5, C=4, layers=3)
            >>> configs = space.latency_configs((32, 32))
            >>> configs[0].key
            'conv3x3_bn|Cin=3|Cout=12|H=32|W=32|stride=1'
        """
        fixed, layout = self._latency_layout(tuple(input_size))
        configs = {c.key: c for c in fixed}
        for cell in layout:
            for i in range(self.steps):
                for j in range(i + 2):
                    for op in DARTS_PRIMITIVES:
                        if op != "none":
                            cfg = self._edge_config(op, j, cell)
                            configs.setdefault(cfg.key, cfg)
        return list(configs.values())

    def expected_latency(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Differentiable expected latency in ms: Σ_cells Σ_edges Σ_o softmax(α)_o · lat(o) + fixed.

        ``lat(none) = 0``; the fixed parts (stem, preprocess, node sums, concat, head) come from
        the table. Every edge of the supernet counts (the derived network keeps two per node: see
        :meth:`derived_latency` for its estimate). For a one-hot α it is the table sum of the
        chosen operations plus the fixed parts.

        Args:
            table: The latency table.
            input_size: Network input ``(H, W)``; default: the table's.

        Returns:
            A scalar tensor on the architecture parameters' device, with gradient to them.

        Raises:
            MissingLatencyError: If the table lacks a configuration.
        """
        size = table.input_size if input_size is None else tuple(input_size)
        fixed, lat_normal, lat_reduce = self._latency_matrices(table, size, self.alphas_normal)
        total = self.alphas_normal.new_tensor(fixed)
        for alpha, lat in ((self.alphas_normal, lat_normal), (self.alphas_reduce, lat_reduce)):
            total = total + (F.softmax(alpha, dim=-1) * lat).sum()
        return total

    def _latency_matrices(
        self, table: LatencyTable, size: tuple[int, int], like: torch.Tensor
    ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """The fixed latency and the per-edge, per-op latencies of normal and reduction cells.

        The ``(num_edges, num_ops)`` matrices sum each edge over all cells of the kind (``none``
        is 0) and are on ``like``'s device and dtype. Cached for the last (table contents, size,
        device, dtype): the search asks every step.
        """
        key = (table.digest, size, like.device, like.dtype)
        cache = self.__dict__.setdefault("_latency_cache", {})
        if key not in cache:
            fixed, layout = self._latency_layout(size)
            edges = [(i, j) for i in range(self.steps) for j in range(i + 2)]
            num_ops = len(DARTS_PRIMITIVES)
            lat = {r: [[0.0] * num_ops for _ in edges] for r in (False, True)}
            for cell in layout:
                rows = lat[cell[0]]
                for e, (_, j) in enumerate(edges):
                    for k, op in enumerate(DARTS_PRIMITIVES):
                        if op != "none":
                            rows[e][k] += table[self._edge_config(op, j, cell)]
            cache.clear()
            cache[key] = (
                table.total(fixed),
                like.new_tensor(lat[False]),
                like.new_tensor(lat[True]),
            )
        return cache[key]

    def latency_op(self, config: OpConfig) -> None:
        """DARTS' tables hold only shared blocks and cell ops: no op builder of its own."""
        return None

    def latency_component_weights(self) -> dict[str, float]:
        """One term, weight 1."""
        return {"operators": 1.0}

    def latency_components(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """The decoupled latency terms by name; DARTS has one: ``"operators"``.

        It equals :meth:`expected_latency`. Spaces with several decision kinds report one term
        per kind (FasterSeg: ``operators``, ``strides``, ``expansion``), each a full-network
        expected latency with the other decisions held fixed; ``LatencyRegularization`` weights
        them.
        """
        return {"operators": self.expected_latency(table, input_size)}

    def derived_latency_configs(
        self, genotype: DartsGenotype | None = None, input_size: tuple[int, int] = (224, 224)
    ) -> list[OpConfig]:
        """The configurations the discrete network of ``genotype`` runs, with repeats.

        Args:
            genotype: The genotype (default: the currently derived one). Its network is the one
                :class:`~lightning_nas.methods.darts.network.DartsNetwork` builds with this
                space's macro settings.
            input_size: Network input ``(H, W)``.
        """
        genotype = self.derive() if genotype is None else genotype
        spec = {
            False: (len(genotype.normal) // 2, len(genotype.normal_concat)),
            True: (len(genotype.reduce) // 2, len(genotype.reduce_concat)),
        }
        configs, layout = self._latency_layout(tuple(input_size), spec)
        for cell in layout:
            for op, j in genotype.reduce if cell[0] else genotype.normal:
                configs.append(self._edge_config(op, j, cell))
        return configs

    def derived_latency(
        self,
        table: LatencyTable,
        genotype: DartsGenotype | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> float:
        """Table estimate (ms) of the discrete network of ``genotype`` (default: the derived one).

        The sum of the table latencies of :meth:`derived_latency_configs`; compare it with a
        measurement of the network (``benchmarks/latency_correlation.py``).
        """
        size = table.input_size if input_size is None else tuple(input_size)
        return table.total(self.derived_latency_configs(genotype, size))
