"""Latency of the Auto-DeepLab search space: tables, the path-expected latency, components.

:class:`AutoDeepLabLatency` is mixed into
:class:`~lightning_nas.methods.autodeeplab.space.AutoDeepLabSpace` (it reads the space's ``layers``,
levels, ``filter_multiplier``, α and β); see
``docs/latency.md`` ("For Auto-DeepLab") for what :meth:`AutoDeepLabLatency.expected_latency`
estimates.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.latency.blocks import BuiltOp, same_channels
from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.table import LatencyTable
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES, AutoDeepLabGenotype
from lightning_nas.methods.autodeeplab.network import (
    STEM_CHANNELS,
    AutoDeepLabASPP,
    aspp_rates,
    autodeeplab_cell_latency_configs,
    autodeeplab_edge_latency_config,
    autodeeplab_head_latency_configs,
    autodeeplab_latency_configs,
    autodeeplab_latency_sizes,
    autodeeplab_stem_latency_config,
)
from lightning_nas.ops import Resize, ceil_div

__all__ = [
    "COMPONENT_WEIGHTS",
    "LATENCY_BLOCKS",
    "AutoDeepLabLatency",
    "build_latency_op",
    "level_statistics",
]

COMPONENT_WEIGHTS: dict[str, float] = {"operators": 1 / 500, "strides": 499 / 500}
"""Default weights of the two decoupled terms: FasterSeg's released two-term weights
(``search/architect.py`` with one width), which the latency callback used for every space with
these two components before each space declared its own."""

LATENCY_BLOCKS: dict[str, str] = {
    "adl_stem": "Auto-DeepLab network stem (stride 4): Conv 3×3 s2 → BN → ReLU → Conv 3×3 → BN "
    "→ ReLU → Conv 3×3 s2 → BN, C_out / 2, C_out / 2, C_out filters",
    "adl_aspp": "ReLU → Auto-DeepLab's DeepLabv3+ ASPP to C_out channels on a feature at output "
    "stride `stride` (which sets the atrous rates)",
    "adl_downsample": "bilinear resize (align_corners) from H×W to ceil(H/stride)×ceil(W/stride)",
    "adl_upsample": "bilinear resize (align_corners) from ceil(H/stride)×ceil(W/stride) to H×W",
}
"""Auto-DeepLab's own latency-table blocks (built by :func:`build_latency_op`); its candidate
operations are the shared cell ops of :func:`lightning_nas.latency.blocks.build_op`."""


def build_latency_op(c: OpConfig) -> BuiltOp | None:
    """The module and input shapes of an Auto-DeepLab block (``adl_*``), else ``None``.

    The op builder of :class:`AutoDeepLabLatency` (``latency_op``).
    """
    if c.op not in LATENCY_BLOCKS:
        return None
    shape = (c.C_in, c.H, c.W)
    if c.op == "adl_stem":
        if c.stride != 4 or c.C_out % 2:
            raise ValueError(f"{c.key}: adl_stem has stride 4 and an even C_out")
        mid = c.C_out // 2
        module = nn.Sequential(
            nn.Conv2d(c.C_in, mid, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=False),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=False),
            nn.Conv2d(mid, c.C_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c.C_out),
        )
        return module, [shape]
    if c.op == "adl_aspp":
        aspp = AutoDeepLabASPP(c.C_in, c.C_out, aspp_rates(c.stride))
        return nn.Sequential(nn.ReLU(), aspp), [shape]
    same_channels(c, c.op)
    low = (ceil_div(c.H, c.stride), ceil_div(c.W, c.stride))
    if c.op == "adl_downsample":
        return Resize(low, align_corners=True), [shape]
    return Resize((c.H, c.W), align_corners=True), [(c.C_in, *low)]  # adl_upsample


class AutoDeepLabLatency:
    """Latency-table methods of ``AutoDeepLabSpace`` (its :class:`LatencyAware` protocol)."""

    latency_op = staticmethod(build_latency_op)
    """The builder of this space's own table blocks (:func:`build_latency_op`)."""

    def _latency_sizes(self, input_size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        if (
            not isinstance(input_size, tuple | list)
            or len(input_size) != 2
            or not all(isinstance(v, int) and v >= 1 for v in input_size)
        ):
            raise ConfigError(f"AutoDeepLabSpace: input_size must be (H, W), got {input_size!r}")
        return autodeeplab_latency_sizes(tuple(input_size), len(self.strides))

    def _cell_channels(self, level: int) -> int:
        return self.blocks * self.filter_multiplier * 2**level

    def _reachable(self, layer: int) -> list[int]:
        """Levels a path can be at on ``layer``; layers -2 and -1 (the stem) count as level 0."""
        return [0] if layer < 0 else self.levels_at[layer]

    def _cell_situations(self) -> list[tuple[int, int, int, int]]:
        """Every ``(kind, a, b, c)`` a cell of a derived network can be in, without repeats.

        ``a``, ``b``, ``c``: levels of ``h[l-2]``, ``h[l-1]`` and the cell; ``kind = min(l, 2)``
        (kind 0: ``h[l-2]``, ``h[l-1]`` are the two stem outputs, ``a = b = 0``; kind 1:
        ``h[l-2]`` is the stem, ``a = 0``).
        """
        seen: dict[tuple[int, int, int, int], None] = {}
        for layer in range(self.layers):
            for a in self._reachable(layer - 2):
                for b in self._reachable(layer - 1):
                    for c in self._reachable(layer):
                        if abs(b - a) <= 1 and abs(c - b) <= 1:
                            seen[(min(layer, 2), a, b, c)] = None
        return list(seen)

    def _cell_fixed_configs(
        self, situation: tuple[int, int, int, int], sizes: tuple[tuple[int, int], ...]
    ) -> list[OpConfig]:
        kind, a, b, c = situation
        stem0, stem1 = STEM_CHANNELS
        prev_prev = ((stem0, -1), (stem1, 0), (self._cell_channels(a), a))[kind]
        prev = (stem1, 0) if kind == 0 else (self._cell_channels(b), b)
        return autodeeplab_cell_latency_configs(
            prev_prev, prev, c, sizes, self.filter_multiplier, self.blocks, self.blocks
        )

    def _edge_config(
        self, op: str, block_input: bool, b: int, c: int, sizes: tuple[tuple[int, int], ...]
    ) -> OpConfig:
        """``op`` on an edge from ``h[l-2]``/``h[l-1]`` (or a block) in a cell moving b → c."""
        j = 2 if block_input else 0
        return autodeeplab_edge_latency_config(op, j, b, c, sizes, self.filter_multiplier)

    def _head_configs(
        self, level: int, size: tuple[int, int], sizes: tuple[tuple[int, int], ...], stem: bool
    ) -> list[OpConfig]:
        """The derived network's head after ``level``; ``stem``: the decoder reads the stem."""
        low = STEM_CHANNELS[1] if stem else self._cell_channels(0)
        return autodeeplab_head_latency_configs(
            level, self._cell_channels(level), low, self.num_classes, size, sizes
        )

    def latency_configs(self, input_size: tuple[int, int]) -> list[OpConfig]:
        """Every configuration a latency table needs for this space at ``input_size`` ``(H, W)``.

        Those of every network :class:`~lightning_nas.networks.AutoDeepLabNetwork` can build from
        a genotype of this space (this space's ``filter_multiplier``, all blocks concatenated,
        the network's default head widths), without repeats: the stem; for every situation a
        cell can be in (levels of ``h[l-2]``, ``h[l-1]`` and the cell, which set the resizes,
        preprocess ops, strides and sizes) its fixed parts and every candidate op but ``none``
        on its edges; the head after every level the last layer can reach, with the decoder
        reading a level-0 cell or the stem. So :meth:`derived_latency` never misses an entry.

        Example:
            >>> from lightning_nas.methods.autodeeplab.space import AutoDeepLabSpace
            >>> space = AutoDeepLabSpace(num_classes=5, layers=3, filter_multiplier=2)
            >>> configs = space.latency_configs((32, 32))
            >>> configs[0].key
            'adl_stem|Cin=3|Cout=128|H=32|W=32|stride=4'
        """
        sizes = self._latency_sizes(input_size)
        size = (int(input_size[0]), int(input_size[1]))
        stem = autodeeplab_stem_latency_config(size, self.in_channels)
        configs = {stem.key: stem}

        def add(cfgs: list[OpConfig]) -> None:
            for cfg in cfgs:
                configs.setdefault(cfg.key, cfg)

        ops = [op for op in AUTODEEPLAB_PRIMITIVES if op != "none"]
        for situation in self._cell_situations():
            _, _, b, c = situation
            add(self._cell_fixed_configs(situation, sizes))
            add([self._edge_config(op, False, b, c, sizes) for op in ops])
            if self.blocks > 1:
                add([self._edge_config(op, True, c, c, sizes) for op in ops])
        for c in self.levels_at[-1]:
            add(self._head_configs(c, size, sizes, stem=False))
            if len(self.strides) > 1:
                add(self._head_configs(c, size, sizes, stem=True))
        return list(configs.values())

    def _latency_tensors(
        self, table: LatencyTable, size: tuple[int, int], like: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The table read into tensors on ``like``'s device and dtype (``n`` levels, 8 ops).

        ``stem`` (scalar); ``fixed`` ``(3, n, n, n)``: the fixed parts of a cell by
        ``(kind, a, b, c)``; ``state`` ``(n, n, 8)``: an op on an edge from ``h[l-2]`` /
        ``h[l-1]`` by ``(b, c)``; ``block`` ``(n, 8)``: an op on an edge from a block by ``c``
        (``none``: 0); ``head`` ``(n,)``: the head after level ``c``, the decoder reading a
        level-0 cell; ``stem_low`` (scalar): what reading the stem instead adds; ``state_rows``:
        the α rows of the edges from ``h[l-2]`` / ``h[l-1]``. Cached for the last (table
        contents, size, device, dtype): the search asks every step.
        """
        key = (table.digest, size, like.device, like.dtype)
        cache = self.__dict__.setdefault("_latency_cache", {})
        if key not in cache:
            sizes = self._latency_sizes(size)
            n, num_ops = len(self.strides), len(AUTODEEPLAB_PRIMITIVES)
            fixed = [[[[0.0] * n for _ in range(n)] for _ in range(n)] for _ in range(3)]
            state = [[[0.0] * num_ops for _ in range(n)] for _ in range(n)]
            block = [[0.0] * num_ops for _ in range(n)]
            for situation in self._cell_situations():
                kind, a, b, c = situation
                fixed[kind][a][b][c] = table.total(self._cell_fixed_configs(situation, sizes))
                for k, op in enumerate(AUTODEEPLAB_PRIMITIVES):
                    if op != "none":
                        state[b][c][k] = table[self._edge_config(op, False, b, c, sizes)]
                        if self.blocks > 1:
                            block[c][k] = table[self._edge_config(op, True, c, c, sizes)]
            head = [0.0] * n
            for c in self.levels_at[-1]:
                head[c] = table.total(self._head_configs(c, size, sizes, stem=False))
            stem_low = 0.0
            if n > 1:
                c = self.levels_at[-1][0]
                stem_low = table.total(self._head_configs(c, size, sizes, stem=True)) - head[c]
            rows = [b * (b + 3) // 2 + j for b in range(self.blocks) for j in (0, 1)]
            cache.clear()
            cache[key] = {
                "stem": like.new_tensor(
                    table[autodeeplab_stem_latency_config(size, self.in_channels)]
                ),
                "fixed": like.new_tensor(fixed),
                "state": like.new_tensor(state),
                "block": like.new_tensor(block),
                "head": like.new_tensor(head),
                "stem_low": like.new_tensor(stem_low),
                "state_rows": torch.tensor(rows, device=like.device),
            }
        return cache[key]

    def transition_matrices(self, beta: Literal["soft", "uniform"] = "soft") -> torch.Tensor:
        """The β transition matrices ``(layers, levels, levels)``, rows summing to 1.

        ``[l, j, i]`` = P(layer ``l`` at level ``i`` | layer ``l - 1`` at level ``j``), layer -1
        being the stem at level 0. ``beta``: ``"soft"`` — the β transition probabilities
        (:meth:`transition_probabilities`); ``"uniform"`` — uniform over each node's existing
        outgoing transitions.
        """
        if beta == "soft":
            probs = self.transition_probabilities()
        else:
            mask = self.transition_mask.to(self.betas.dtype)
            probs = mask / mask.sum(-1, keepdim=True)
        n = len(self.strides)
        d = (
            torch.arange(n, device=probs.device)[None, :]
            - torch.arange(n, device=probs.device)[:, None]
            + 1
        )
        valid = (d >= 0) & (d <= 2)
        index = d.clamp(0, 2).expand(self.layers, n, n)
        return probs.gather(2, index) * valid

    def _expected(
        self,
        table: LatencyTable,
        input_size: tuple[int, int] | None,
        alpha: Literal["soft", "uniform"],
        beta: Literal["soft", "uniform"],
    ) -> torch.Tensor:
        """Expected latency with α and β each ``"soft"`` (softmax) or ``"uniform"``."""
        size = table.input_size if input_size is None else (int(input_size[0]), int(input_size[1]))
        t = self._latency_tensors(table, size, self.alphas)
        if alpha == "soft":
            w = torch.softmax(self.alphas, dim=-1)
        else:
            w = torch.full_like(self.alphas, 1 / len(AUTODEEPLAB_PRIMITIVES))
        w_state = w[t["state_rows"]].sum(0)
        w_block = w.sum(0) - w_state
        cells, last, stem_low = level_statistics(self.transition_matrices(beta))
        pairs = cells.sum((0, 1))  # (b, c): expected number of cells moving b → c
        ops = torch.einsum("bc,bco,o->", pairs, t["state"], w_state)
        ops = ops + torch.einsum("c,co,o->", pairs.sum(0), t["block"], w_block)
        return (
            t["stem"]
            + (cells * t["fixed"]).sum()
            + ops
            + (last * t["head"]).sum()
            + stem_low * t["stem_low"]
        )

    def expected_latency(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Differentiable expected latency (ms) of the derived network, over the path and α.

        The network-level path is a Markov chain: layer ``l``'s level given layer ``l - 1``'s
        has the β transition probabilities (β is normalised over each node's outgoing
        transitions), starting from the stem at level 0. Under that chain this is the exact
        expectation of the table latency of :class:`~lightning_nas.networks.AutoDeepLabNetwork`
        along the path, with each cell relaxed as in DARTS:

        * the stem;
        * per cell ``l``, its fixed parts (resizes, the two preprocess ops, ``2·B`` ``add``s,
          the concat), which depend on the levels ``a, b, c`` of ``h[l-2]``, ``h[l-1]`` and the
          cell, weighted by ``P(L_{l-2} = a, L_{l-1} = b, L_l = c)`` from the forward recursion
          (:func:`level_statistics`);
        * per cell, every edge of the cell (all ``Σ(b+2)``, not the two per block the derived
          cell keeps) with ``Σ_o softmax(α)_o · lat(o)`` (``lat(none) = 0``), ``lat`` at that
          edge's configuration (which depends on ``L_{l-1}``, ``L_l``);
        * the head after the last layer's level ``c`` weighted by ``P(L_{L-1} = c)``, plus
          ``P(the decoder reads the stem) · (its projection of the stem − that of a level-0
          cell)`` (the decoder reads the stem when no level-0 cell comes before the path first
          reaches its deepest level: ``low_level_cell`` of the network module).

        So for one-hot α and β it is the table sum of that single path's network with every
        edge's op; for α one-hot on a genotype's ops and on ``none`` elsewhere it is the
        β-expectation of :meth:`derived_latency` over the paths.

        Args:
            table: The latency table.
            input_size: Network input ``(H, W)``; default: the table's.

        Returns:
            A scalar tensor with gradient to α and β.

        Raises:
            MissingLatencyError: If the table lacks a configuration.
        """
        return self._expected(table, input_size, "soft", "soft")

    def latency_component_weights(self) -> dict[str, float]:
        """The default weights of :meth:`latency_components` (:data:`COMPONENT_WEIGHTS`).

        FasterSeg's released two-term weights: 1/500 for the operators, 499/500 for the strides.
        """
        return dict(COMPONENT_WEIGHTS)

    def latency_components(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """FasterSeg's decoupled terms for Auto-DeepLab's two decisions.

        ``operators``: :meth:`expected_latency` with β uniform over each node's outgoing
        transitions (gradient to α only); ``strides``: with α uniform over the eight ops
        (gradient to β only). ``LatencyRegularization`` weights them
        (:meth:`latency_component_weights` by default).
        """
        return {
            "operators": self._expected(table, input_size, "soft", "uniform"),
            "strides": self._expected(table, input_size, "uniform", "soft"),
        }

    def derived_latency_configs(
        self,
        genotype: AutoDeepLabGenotype | None = None,
        input_size: tuple[int, int] = (224, 224),
        aspp_channels: int = 256,
        decoder_channels: int = 256,
        low_level_channels: int = 48,
    ) -> list[OpConfig]:
        """The configurations the discrete network of ``genotype`` runs, with repeats.

        Args:
            genotype: The genotype (default: the currently derived one). Its network is the one
                :class:`~lightning_nas.networks.AutoDeepLabNetwork` builds with this space's
                ``filter_multiplier`` and ``in_channels``, all blocks concatenated.
            input_size: Network input ``(H, W)``.
            aspp_channels: As the network (:meth:`latency_configs` covers the default).
            decoder_channels: As the network (likewise).
            low_level_channels: As the network (likewise).
        """
        genotype = self.derive() if genotype is None else genotype
        size = (int(input_size[0]), int(input_size[1]))
        self._latency_sizes(size)  # validates
        return autodeeplab_latency_configs(
            genotype,
            self.num_classes,
            size,
            filter_multiplier=self.filter_multiplier,
            in_channels=self.in_channels,
            aspp_channels=aspp_channels,
            decoder_channels=decoder_channels,
            low_level_channels=low_level_channels,
        )

    def derived_latency(
        self,
        table: LatencyTable,
        genotype: AutoDeepLabGenotype | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> float:
        """Table estimate (ms) of the discrete network of ``genotype`` (default: the derived one).

        The sum of the table latencies of :meth:`derived_latency_configs`.
        """
        size = table.input_size if input_size is None else tuple(input_size)
        return table.total(self.derived_latency_configs(genotype, size))


def level_statistics(
    transitions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path statistics of the level Markov chain, by a forward recursion (differentiable).

    Layer -1 (the stem) is at level 0 and the path's levels ``L_0 … L_{N-1}`` follow
    ``transitions[l, j, i] = P(L_l = i | L_{l-1} = j)``. With ``L_{-2} = L_{-1} = 0`` (the two
    stem outputs), ``P(L_{l-2}, L_{l-1}, L_l) = p_{l-2}(a) · T_{l-1}[a, b] · T_l[b, c]`` (``T_{-1}
    = I``), ``p_l`` the marginal of layer ``l``.

    Args:
        transitions: ``(layers, levels, levels)`` row-stochastic matrices (rows of levels the
            path cannot be at are ignored).

    Returns:
        ``cells`` ``(3, n, n, n)``: ``[k, a, b, c]`` = the expected number of layers ``l`` with
        ``min(l, 2) = k`` and ``(L_{l-2}, L_{l-1}, L_l) = (a, b, c)`` (i.e. the sum of those
        joint probabilities); ``last`` ``(n,)``: the distribution of ``L_{N-1}``; ``stem_low``:
        the probability that
        :func:`~lightning_nas.methods.autodeeplab.network.low_level_cell` of the path is ``None``
        (no level-0 cell before the path first reaches its deepest level).

    Example:
        >>> T = torch.tensor([[[0.5, 0.5], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
        >>> cells, last, stem_low = level_statistics(T)
        >>> last.tolist(), float(stem_low)  # paths 00, 01, 10, 11; the last two read the stem
        ([0.5, 0.5], 0.5)
        >>> cells[1].sum(0).tolist()  # layer 1: P(L_0, L_1)
        [[0.25, 0.25], [0.25, 0.25]]
    """
    layers, n, _ = transitions.shape
    eye = torch.eye(n, dtype=transitions.dtype, device=transitions.device)
    p_pp = p_p = eye[0]
    t_prev = eye
    parts: list[list[torch.Tensor]] = [[], [], []]
    for layer in range(layers):
        joint = p_pp[:, None, None] * t_prev[:, :, None] * transitions[layer][None, :, :]
        parts[min(layer, 2)].append(joint)
        p_pp, p_p, t_prev = p_p, joint.sum((0, 1)), transitions[layer]
    zero = transitions.new_zeros(n, n, n)
    cells = torch.stack([torch.stack(p).sum(0) if p else zero for p in parts])
    return cells, p_p, _stem_low_probability(transitions)


def _stem_low_probability(transitions: torch.Tensor) -> torch.Tensor:
    """P(no level-0 cell at or before the first cell at the path's deepest level).

    Only paths starting at level 1 qualify: they qualify iff, after their first visit to level
    0, they never go deeper than the deepest level reached before it. Two sets of states, each
    ``(n, n)`` indexed ``[level, m]``: ``before`` (level 0 not visited yet, ``m`` the deepest
    level so far) and ``after`` (visited, ``m`` the deepest level before the visit, not
    exceeded since); paths that exceed ``m`` afterwards, or start at level 0, are dropped.
    """
    layers, n, _ = transitions.shape
    if n < 2:
        return transitions.new_zeros(())
    k = torch.arange(n, device=transitions.device)[:, None]  # next level
    m = torch.arange(n, device=transitions.device)[None, :]  # deepest level
    eye = torch.eye(n, dtype=transitions.dtype, device=transitions.device)
    before = transitions[0, 0, 1] * eye[1][:, None] * eye[1][None, :]  # stem → level 1
    after = torch.zeros_like(before)
    for layer in range(1, layers):
        t = transitions[layer].transpose(0, 1)  # [next level, level]
        x, y = t @ before, t @ after
        deeper = torch.where(m <= k, x, 0.0).sum(1)  # a new deepest level k
        before = torch.where((m > k) & (k >= 1), x, 0.0) + torch.diag(deeper * (k[:, 0] >= 1))
        after = torch.where(m >= k, y, 0.0) + torch.where(k == 0, x, 0.0)
    return before.sum() + after.sum()
