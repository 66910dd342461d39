"""Latency of the FasterSeg search space: tables, the expected latency, decoupled components.

:class:`FasterSegLatency` is mixed into
:class:`~lightning_nas.methods.fasterseg.space.FasterSegSpace` (it reads the space's layers,
widths, channels, α, β and γ of the student); see ``docs/fasterseg.md`` ("Latency and
distillation") for what it estimates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lightning_nas.latency.blocks import BuiltOp, same_channels
from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.table import LatencyTable
from lightning_nas.methods.fasterseg.genotype import FASTERSEG_PRIMITIVES, FasterSegGenotype
from lightning_nas.methods.fasterseg.ops import (
    Head,
    UpsampleConcat,
    make_fasterseg_op,
    make_fasterseg_stem,
    stem_channels,
)
from lightning_nas.ops import ConvNorm, Resize, ceil_div

__all__ = [
    "FASTERSEG_COMPONENT_WEIGHTS",
    "FASTERSEG_TWO_COMPONENT_WEIGHTS",
    "LATENCY_BLOCKS",
    "FasterSegLatency",
    "build_latency_op",
    "release_component_weights",
]

FASTERSEG_COMPONENT_WEIGHTS: dict[str, float] = {
    "operators": 1 / 500,
    "strides": 497 / 500,
    "expansion": 2 / 500,
}
"""FasterSeg's decoupled weights as released when the widths are searched
(``search/architect.py``: r0 = 1/500 for the operators α, r1 = 497/500 for the downsampling β,
r2 = 2/500 for the widths γ)."""

FASTERSEG_TWO_COMPONENT_WEIGHTS: dict[str, float] = {
    "operators": 1 / 500,
    "strides": 499 / 500,
}
"""FasterSeg's released weights when the widths are not searched (``search/architect.py``,
``len(width_mult_list) == 1``: r0 = 1/500, r1 = 499/500) — not 1/500 and 497/500 renormalised,
which would give 1/498 : 497/498."""


def release_component_weights(components: Iterable[str]) -> dict[str, float]:
    """The release's weights for the components a space reports (FasterSeg's default).

    Example:
        >>> release_component_weights({"operators": 0, "strides": 0})
        {'operators': 0.002, 'strides': 0.998}
        >>> sorted(release_component_weights({"operators": 0, "strides": 0, "expansion": 0}))
        ['expansion', 'operators', 'strides']
    """
    if set(components) == set(FASTERSEG_TWO_COMPONENT_WEIGHTS):
        return dict(FASTERSEG_TWO_COMPONENT_WEIGHTS)
    return dict(FASTERSEG_COMPONENT_WEIGHTS)


LATENCY_BLOCKS: dict[str, str] = {
    **{
        f"fs_{p}": f"FasterSeg's fixed operator {p!r} C_in → C_out (make_fasterseg_op)"
        for p in FASTERSEG_PRIMITIVES
    },
    "fs_stem": "FasterSeg stem (stride 8) to C_out channels (width unit Fch·r: expansion, "
    "default C_out / 8)",
    "fs_convnorm1x1": "Conv 1×1 (stride, no bias) → BN → ReLU — FasterSeg head",
    "fs_convnorm3x3": "Conv 3×3 (stride, no bias) → BN → ReLU — FasterSeg head",
    "fs_up2_concat": "bilinear resize of (C_in, ceil(H/stride), ceil(W/stride)) to H×W, concat "
    "with a (C_out - C_in, H, W) skip — FasterSeg head",
    "fs_head": "FasterSeg Head: ConvNorm 3×3 → Conv 1×1 with bias to C_out classes",
    "fs_upsample": "bilinear resize (align_corners) from ceil(H/stride)×ceil(W/stride) to H×W",
}
"""FasterSeg's latency-table operations and blocks (built by :func:`build_latency_op`)."""


def build_latency_op(c: OpConfig) -> BuiltOp | None:
    """The module and input shapes of a FasterSeg operation or block (``fs_*``), else ``None``.

    Raises:
        ValueError: On an unknown ``fs_*`` name or a configuration that does not fit.

    ``fs_<op>`` is the fixed operator of :func:`~lightning_nas.methods.fasterseg.ops.
    make_fasterseg_op` (``C_in → C_out``). ``H``/``W`` are the input size, except for
    ``fs_upsample`` and ``fs_up2_concat`` where they are the output size and ``stride`` the
    upsampling factor. The op builder of :class:`FasterSegLatency` (``latency_op``).
    """
    if c.op not in LATENCY_BLOCKS:
        if c.op.startswith("fs_"):
            raise ValueError(
                f"{c.key}: unknown FasterSeg op {c.op!r}; known: {', '.join(LATENCY_BLOCKS)}"
            )
        return None
    shape = (c.C_in, c.H, c.W)
    low = (c.C_in, ceil_div(c.H, c.stride), ceil_div(c.W, c.stride))
    name = c.op.removeprefix("fs_")
    if name in FASTERSEG_PRIMITIVES:
        return make_fasterseg_op(name, c.C_in, c.C_out, c.stride), [shape]
    if c.op == "fs_stem":
        if c.stride != 8:
            raise ValueError(f"{c.key}: fs_stem has stride 8")
        channels = stem_channels(1, c.C_out / 8 if c.expansion is None else c.expansion)
        if channels[2] != c.C_out:
            raise ValueError(
                f"{c.key}: the stem of width unit {c.expansion} outputs {channels[2]} channels"
            )
        return make_fasterseg_stem(c.C_in, channels), [shape]
    if c.op in ("fs_convnorm1x1", "fs_convnorm3x3"):
        return ConvNorm(c.C_in, c.C_out, int(c.op[-1]), c.stride), [shape]
    if c.op == "fs_head":
        return Head(c.C_in, c.C_out), [shape]
    if c.op == "fs_up2_concat":
        if c.C_out <= c.C_in:
            raise ValueError(f"{c.key}: fs_up2_concat needs C_out > C_in (C_out - C_in: skip)")
        return UpsampleConcat(), [low, (c.C_out - c.C_in, c.H, c.W)]
    same_channels(c, "fs_upsample")
    return Resize((c.H, c.W), align_corners=True), [low]


class FasterSegLatency:
    """Latency-table methods of ``FasterSegSpace`` (its :class:`LatencyAware` protocol)."""

    latency_op = staticmethod(build_latency_op)
    """The builder of this space's own table operations (:func:`build_latency_op`)."""

    def _sizes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """Input sizes at 1/8, 1/16, 1/32: ``ceil`` halving, the sizes the ops run at.

        (The release's ``forward_latency`` bookkeeping writes ``h // 2``; at its 1024×2048 every
        size is even and both agree.)
        """
        h, w = input_size
        for _ in range(3):
            h, w = -(-h // 2), -(-w // 2)
        sizes = [(h, w)]
        for _ in range(2):
            h, w = -(-h // 2), -(-w // 2)
            sizes.append((h, w))
        return sizes

    def _stem_config(self, input_size: tuple[int, int], arch_set: str = "student") -> OpConfig:
        from lightning_nas.methods.fasterseg.network import stem_latency_config

        return stem_latency_config(self.Fch, self.stem_head[arch_set][0], tuple(input_size))

    def _cell_ops(self, li: int, j: int, target: str) -> tuple[list[int], list[int], int, int]:
        """``(input channel choices, output choices, output scale, stride)`` of an op."""
        ins = [self._channels(0, self.stem_head["student"][0])] if li == 0 else None
        jj = j if target == "keep" else j + 1
        if li == self.layers - 1:
            outs = [self._channels(jj, self.stem_head["student"][1])]
        else:
            outs = [self._channels(jj, w) for w in self.widths]
        if ins is None:
            ins = [self._channels(j, w) for w in self.widths]
        return ins, outs, jj, 1 if target == "keep" else 2

    def _op_positions(self) -> list[tuple[int, int, str]]:
        """Every mixed op of the lattice: ``(layer, scale, "keep" | "down")``."""
        return [
            (li, j, target)
            for li in range(self.layers)
            for j in range(min(li, 2) + 1)
            for target in (("keep", "down") if j < 2 and li < self.layers - 1 else ("keep",))
        ]

    def _op_configs(
        self, li: int, j: int, target: str, sizes: Sequence[tuple[int, int]]
    ) -> list[list[list[OpConfig]]]:
        """Configurations of a mixed op, indexed ``[op][input width][output width]``."""
        ins, outs, _, stride = self._cell_ops(li, j, target)
        return [
            [[OpConfig(f"fs_{op}", ci, co, *sizes[j], stride=stride) for co in outs] for ci in ins]
            for op in FASTERSEG_PRIMITIVES
        ]

    def latency_configs(self, input_size: tuple[int, int]) -> list[OpConfig]:
        """Every configuration a latency table needs for the student at ``input_size``.

        The stem, every op of every cell at every (input, output) width the student can take,
        and the head pieces of every network the space can derive (so
        :meth:`derived_latency` never misses an entry).
        """
        from lightning_nas.methods.fasterseg.network import head_latency_configs

        size = tuple(input_size)
        sizes = self._sizes(size)
        configs = {self._stem_config(size).key: self._stem_config(size)}
        for position in self._op_positions():
            for per_op in self._op_configs(*position, sizes):
                for row in per_op:
                    for cfg in row:
                        configs.setdefault(cfg.key, cfg)
        stem_c = self._channels(0, self.stem_head["student"][0])
        c8 = sorted({stem_c, *(self._channels(0, w) for w in self.widths)})
        c16 = sorted({self._channels(1, w) for w in self.widths})
        for cfg in head_latency_configs(
            self.num_classes, size, self.Fch, self.stem_head["student"][1], c8, c16
        ):
            configs.setdefault(cfg.key, cfg)
        return list(configs.values())

    def _latency_tensors(self, table: LatencyTable, size: tuple[int, int], like: torch.Tensor):
        key = (table.digest, size, like.device, like.dtype)
        cache = self.__dict__.setdefault("_latency_cache", {})
        if key not in cache:
            sizes = self._sizes(size)
            lat = {
                position: like.new_tensor(
                    [
                        [[table[c] for c in row] for row in per_op]
                        for per_op in self._op_configs(*position, sizes)
                    ]
                )
                for position in self._op_positions()
            }
            cache.clear()
            cache[key] = (table[self._stem_config(size)], lat)
        return cache[key]

    def _expected(
        self, table: LatencyTable, size: tuple[int, int], alpha: str, beta: str, gamma: str
    ) -> torch.Tensor:
        """Expected student latency, each decision ``"soft"``, ``"uniform"`` or ``"max"``.

        ``"soft"``: softmax of the logits; ``"max"`` (γ only): the widest width.
        """
        like = self.alpha_student_0
        stem, lat = self._latency_tensors(table, size, like)
        n_ops, n_w = len(FASTERSEG_PRIMITIVES), len(self.widths)

        def alphas(j: int) -> torch.Tensor:
            a = getattr(self, f"alpha_student_{j}")
            return F.softmax(a, -1) if alpha == "soft" else torch.full_like(a, 1 / n_ops)

        def betas(j: int) -> torch.Tensor:
            b = getattr(self, f"beta_student_{j}")
            return F.softmax(b, -1) if beta == "soft" else torch.full_like(b, 0.5)

        def widths(j: int) -> torch.Tensor:
            rows = self.layers - max(j, 1)
            if gamma == "soft" and n_w > 1:
                return F.softmax(getattr(self, f"ratio_student_{j}"), -1)
            if gamma == "uniform":
                return like.new_full((rows, n_w), 1 / n_w)
            p = like.new_zeros((rows, n_w))
            p[:, -1] = 1
            return p

        A, B, G = (
            [alphas(j) for j in range(3)],
            {j: betas(j) for j in (1, 2)},
            [widths(j) for j in range(3)],
        )
        one = like.new_ones(1)

        def node(li: int, j: int) -> torch.Tensor:
            if li == -1 or li == self.layers - 1:
                return one
            return G[j][li - 1 if j == 2 else li]

        def op_latency(li: int, j: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            """Expected latency of cell ``(li, j)``'s keep and down ops (``None``: no down)."""
            p_in, a = node(li - 1, j), A[j][li - j]
            keep = torch.einsum("o,a,b,oab->", a, p_in, node(li, j), lat[(li, j, "keep")])
            if (li, j, "down") not in lat:
                return keep, None
            op = lat[(li, j, "down")]
            return keep, torch.einsum("o,a,b,oab->", a, p_in, node(li, j + 1), op)

        def cell(li: int, j: int, before: torch.Tensor) -> tuple[torch.Tensor, Any]:
            keep, down = op_latency(li, j)
            return before + keep, None if down is None else before + down

        start = like.new_full((), stem)
        if self.latency_recursion == "release":
            paths = self._release_paths(start, B, op_latency)
        else:
            paths = self._lattice(start, B, cell)
        return sum(w * path for w, path in zip(self.latency_scale_weights, paths))

    def _release_paths(
        self, stem: torch.Tensor, betas: Mapping[int, torch.Tensor], op_latency: Any
    ) -> list[torch.Tensor]:
        """The release's accumulation of cell latencies into the three path latencies.

        Re-implements the loop ``for ii, lat in enumerate(latency)`` of the release's
        ``Network_Multi_Path.forward_latency`` (``search/model_search.py`` at HEAD), quirks
        included. With running totals ``keep[s]`` and ``down[s]`` per scale (``keep[0]`` starts
        at the stem, the others at 0), the cells of layer ``l`` are visited in scale order and
        update the totals in place:

        * scale 0: ``keep[0] += op_keep``; ``down[0] = keep[0] + op_down`` — the *updated* keep
          total, so the keep op's latency also enters the down path;
        * the first cell of a scale (``l == s``): ``keep[s] = down[s-1] + op_keep``,
          ``down[s] = down[s-1] + op_down`` — ``down[s-1]`` already updated by this layer's
          finer cell, one layer late;
        * a cell with two inputs: ``keep[s] = b1·keep[s] + b0·down[s-1] + op_keep`` and
          ``down[s] = b1·keep[s] + b0·down[s-1] + op_down`` (again the updated keep), where
          ``b`` is the β row ``betas[j][l-j-1]`` with ``j`` the release's leftover loop
          variable, i.e. 2 (the 1/32 scale): row ``l - 3`` of β2 (``β2[-1]`` at ``l = 2``) for
          the 1/16 *and* the 1/32 cells. A two-input cell without a down op (1/32, last layer)
          has ``op_down = 0`` rather than none, so the last layer's 1/16 cell still rewrites
          ``down[1]`` before the 1/32 cell reads it.

        The release's per-cell latency of a two-input cell, ``β0·op + β1·op``, is ``op`` (β sums
        to 1) and is taken as such, so β of the 1/16 scale (``beta_student_1``) has no latency
        gradient at all — as in the release, where it is zero up to rounding. Returns the three
        ``keep`` totals (paths ending at 1/8, 1/16, 1/32).
        """
        keep: list[Any] = [stem, 0.0, 0.0]
        down: list[Any] = [0.0, 0.0, 0.0]
        for li in range(self.layers):
            last = min(li, 2)  # the release's leftover scale index of its per-cell loop
            for j in range(last + 1):
                op_keep, op_down = op_latency(li, j)
                two_inputs = j > 0 and li != j
                if op_down is None and two_inputs:
                    op_down = 0.0  # the release's β-sum over missing downs is 0, not None
                if j == 0:
                    keep[0] = keep[0] + op_keep
                    if op_down is not None:
                        down[0] = keep[0] + op_down
                elif not two_inputs:
                    keep[j] = down[j - 1] + op_keep
                    if op_down is not None:
                        down[j] = down[j - 1] + op_down
                else:
                    b = betas[last][li - last - 1]
                    keep[j] = b[1] * keep[j] + b[0] * down[j - 1] + op_keep
                    down[j] = b[1] * keep[j] + b[0] * down[j - 1] + op_down
        return keep

    def expected_latency(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Differentiable expected latency (ms) of the student's stem and cells.

        Each cell's expected latency (``Σ_o α_o Σ_{a,b} p_in(a) p_out(b) lat(o, a, b)``, p the
        width distributions) is accumulated from the stem along the β-weighted paths to the
        three final scales, and the three path latencies are summed, weighted by
        ``latency_scale_weights`` (default 1, 1, 1 for 1/8, 1/16, 1/32: the release's
        ``forward_latency`` at HEAD sums them unweighted).

        ``latency_recursion="release"`` accumulates as the release does
        (:meth:`_release_paths`; the paths are not exactly the expectation, and β of the 1/16
        scale gets no gradient). ``"exact"``: for one-hot α, β, γ it is the weighted sum of the
        table sums of the chosen ops along the three paths (stem included in each). The head,
        a constant of the derived network, is left out (:meth:`derived_latency` includes it).
        """
        size = table.input_size if input_size is None else tuple(input_size)
        return self._expected(table, size, "soft", "soft", "soft")

    def latency_component_weights(self) -> dict[str, float]:
        """The release's weights of :meth:`latency_components`.

        1/500, 497/500, 2/500 with searched widths; 1/500, 499/500 with one width.
        """
        names = ["operators", "strides"] + (["expansion"] if len(self.widths) > 1 else [])
        return release_component_weights(names)

    def latency_components(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """The decoupled latency terms of reference §3.2.

        ``operators`` (α; β uniform, widest γ), ``strides`` (β; α uniform, widest γ),
        ``expansion`` (γ; α, β uniform).
        """
        size = table.input_size if input_size is None else tuple(input_size)
        terms = {
            "operators": self._expected(table, size, "soft", "uniform", "max"),
            "strides": self._expected(table, size, "uniform", "soft", "max"),
        }
        if len(self.widths) > 1:
            terms["expansion"] = self._expected(table, size, "uniform", "uniform", "soft")
        return terms

    def derived_latency(
        self,
        table: LatencyTable,
        genotype: FasterSegGenotype | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> float:
        """Table estimate (ms) of the derived student network (shared cells counted once)."""
        from lightning_nas.methods.fasterseg.network import fasterseg_latency_configs

        size = table.input_size if input_size is None else tuple(input_size)
        genotype = self.derive() if genotype is None else genotype
        return table.total(fasterseg_latency_configs(genotype, self.num_classes, size, self.Fch))
