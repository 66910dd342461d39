"""Latency of the DARTS search space: table configurations, the expected latency, derived nets.

:class:`DartsLatency` is mixed into :class:`~lightning_nas.methods.darts.space.DartsSpace` (it
reads the space's macro settings and α); see ``docs/latency.md`` ("For DARTS") for what it
estimates. DARTS' tables hold only shared blocks and cell candidate ops, so it has no op builder
of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_nas.errors import ConfigError
from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.table import LatencyTable
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES, DartsGenotype
from lightning_nas.methods.darts.network import reduction_layers

__all__ = ["DartsLatency"]


class DartsLatency:
    """Latency-table methods of ``DartsSpace`` (its ``LatencyAware`` protocol)."""

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
            >>> from lightning_nas.methods.darts.space import DartsSpace
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
