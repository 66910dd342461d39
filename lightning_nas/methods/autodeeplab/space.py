"""Auto-DeepLab (Liu et al., CVPR 2019): hierarchical cell + network-level search space.

The supernet is a lattice of ``layers`` × ``len(strides)`` nodes. Node ``(l, i)`` runs at output
stride ``strides[i]`` with ``blocks · F · 2^i`` channels (paper: ``B·F·s/4``) and is, as in
eq. (6),

    ^sH^l = Σ_{s' ∈ {s/2, s, 2s}} β(^{s'}H^{l-1} → ^sH^l) · Cell(^{s'}H^{l-1}, ^sH^{l-2}; α),

the cell-level α (``alphas``, one row per block input, DARTS-style mixed ops over the eight
:data:`~lightning_nas.ops.AUTODEEPLAB_PRIMITIVES`) shared by every cell. The three
``Cell(·, ·; α)`` of a node are one cell — one set of weights — applied to each incoming
transition (as in the public port, and as the derived network has one cell per layer).
β is normalised over each node's *outgoing* transitions (eq. 7–8, a softmax over the two or three
that exist), so it reads as transition probabilities and the network level is decoded as the
maximum-probability path by the Viterbi algorithm
(:mod:`lightning_nas.methods.autodeeplab.viterbi`).

Layout of ``betas`` (the public port's): ``(layers, len(strides), 3)``; ``betas[l, j, d]`` is the
logit of the transition from node ``(l - 1, j)`` to node ``(l, j + d - 1)`` — ``d`` = 0 to the
finer level, 1 same level, 2 to the coarser level. Layer ``-1`` is the stem, at level 0 only, so
of ``betas[0]`` only the row ``betas[0, 0]`` is used (stem → layer 0 at stride 4 or 8, scored by
its own 2-way softmax like every other node); rows of nodes that cannot be reached are unused
(they keep their initial value and get zero gradient).

Implementation: nodes that cannot be reached from the stem (level ``i > l + 1``) are not built;
a node's cell runs once on the batch of its incoming transitions stacked together, its
BatchNorms normalising each transition over its own samples (:class:`_Node`: exactly the cell
run on each transition in turn, running statistics included); all mixed ops leaving one state
are a few grouped convolutions (exactly separate ops: BatchNorm is per channel); ``none`` is
skipped (its output is zero; its weight still takes part in the softmax);
pools, their BatchNorm and the skip connection, parameter-free, are computed once per state; the
edges from ``h[l-2]``, the same for every transition into a node, are computed once; kernel taps
that only see padding on small maps are not computed; both ``sep_conv`` sizes, and on small maps
both atrous convs, run fused (:data:`_FUSED_KERNELS`: fewer kernel calls, the same function up
to float rounding). ``benchmarks/supernet_step.py`` measures the result (``docs/memory.md``).

Latency (``docs/latency.md``): :meth:`AutoDeepLabSpace.expected_latency` is the exact
expectation, over the β Markov chain of paths, of the table latency of the derived
:class:`~lightning_nas.networks.AutoDeepLabNetwork` with DARTS-relaxed cells
(:func:`level_statistics` computes the path law); :meth:`~AutoDeepLabSpace.latency_components`
decouples α (``operators``) from β (``strides``) as FasterSeg does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES, AutoDeepLabGenotype
from lightning_nas.methods.autodeeplab.latency import AutoDeepLabLatency, level_statistics
from lightning_nas.methods.autodeeplab.viterbi import path_log_probability, viterbi_path
from lightning_nas.spaces.base import SearchSpace

__all__ = ["AutoDeepLabSpace", "derive_cell", "level_statistics"]

_NONE = AUTODEEPLAB_PRIMITIVES.index("none")
# the seven ops actually computed, in α-column order after dropping ``none`` (column 0)
_OP_COLUMNS = {name: k for k, name in enumerate(AUTODEEPLAB_PRIMITIVES) if name != "none"}
_DIRECTIONS = ("to_finer", "to_same", "to_coarser")


def derive_cell(weights: torch.Tensor, blocks: int) -> tuple[tuple[str, int], ...]:
    """Auto-DeepLab's cell decoding (paper §4.3) on the softmax of α.

    For block ``b`` the inputs ``j`` (0 = ``h[l-2]``, 1 = ``h[l-1]``, ``2 + k`` = block ``k``)
    are ranked by their strongest non-``none`` weight and the two strongest are kept (stable
    sort: on a tie the lower ``j`` first); each kept input takes its strongest non-``none`` op
    (on a tie the first in :data:`~lightning_nas.ops.AUTODEEPLAB_PRIMITIVES`). ``none`` is
    never chosen (the public port's argmax may pick it). Pairs are listed strongest first.

    Args:
        weights: ``(sum(b + 2 for b in range(blocks)), 8)`` softmax weights, rows block by block
            and, within a block, by input index.
        blocks: Number of blocks B.

    Returns:
        Two ``(op, input)`` pairs per block.

    Raises:
        ValueError: If ``weights`` has the wrong shape.

    Example:
        >>> w = torch.zeros(5, 8)
        >>> w[0, 4], w[1, 6], w[2:, 0] = 1.0, 0.5, 2.0  # 2 blocks; block 1 only has `none`
        >>> derive_cell(w, blocks=2)
        (('sep_conv_3x3', 0), ('atrous_conv_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1))
    """
    rows_expected = sum(b + 2 for b in range(blocks))
    if tuple(weights.shape) != (rows_expected, len(AUTODEEPLAB_PRIMITIVES)):
        raise ValueError(
            f"derive_cell: expected weights of shape ({rows_expected}, "
            f"{len(AUTODEEPLAB_PRIMITIVES)}) for {blocks} blocks, got {tuple(weights.shape)}"
        )
    w = weights.detach().double().cpu().tolist()
    ops = [k for k in range(len(AUTODEEPLAB_PRIMITIVES)) if k != _NONE]
    cell: list[tuple[str, int]] = []
    start = 0
    for b in range(blocks):
        rows = w[start : start + b + 2]
        strength = [max(row[k] for k in ops) for row in rows]
        for j in sorted(range(b + 2), key=lambda j: -strength[j])[:2]:
            best = max(ops, key=lambda k: rows[j][k])  # first maximum on ties
            cell.append((AUTODEEPLAB_PRIMITIVES[best], j))
        start += b + 2
    return tuple(cell)


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d for inputs that stack several transitions, whose statistics can be frozen.

    ``forward(x, chunks=T, repeats=R)`` (training mode; in eval mode every sample is normalised
    with the running statistics, so ``chunks`` and ``repeats`` change nothing):

    * ``chunks = T``: ``x`` holds T inputs interleaved sample by sample (batch index ``n·T + t``
      is sample ``n`` of input ``t``). Each is normalised with its own batch statistics and the
      running statistics take T updates, in the order ``t = 0 .. T-1``: exactly what T calls
      of ``nn.BatchNorm2d`` on the T inputs in turn give. The statistics come from one fused
      call on the free view ``(N, T·C, H, W)`` (channel ``t·C + c`` is channel ``c`` of input
      ``t``), into temporary buffers (momentum 1: the batch mean and unbiased variance of each
      input), and are then folded into the running statistics one input after the other.
    * ``repeats = R``: the running statistics take R identical updates, as R calls on the same
      ``x`` would (one update with momentum ``1 - (1 - m)^R``).

    With ``update_stats`` off (checkpoint recomputation) it normalises exactly as above, through
    the same call (so autograd saves the same tensors, as checkpointing requires), but leaves the
    running statistics and ``num_batches_tracked`` untouched (momentum 0 on the running
    statistics, or the temporary buffers discarded).
    """

    update_stats: bool = True

    def _factors(self, updates: int) -> list[float]:
        """The averaging factor of each of ``updates`` successive updates, as ``nn.BatchNorm2d``."""
        if self.momentum is not None:
            return [self.momentum] * updates
        done = int(self.num_batches_tracked)  # momentum None: cumulative moving average
        return [1.0 / (done + u + 1) for u in range(updates)]

    def forward(self, x: torch.Tensor, chunks: int = 1, repeats: int = 1) -> torch.Tensor:
        if self.running_mean is None or self.running_var is None:  # batch statistics only
            view = x.reshape(x.shape[0] // chunks, chunks * x.shape[1], *x.shape[2:])
            return self._normalise(view, None, None, chunks, 0.0).view(x.shape)
        if not self.training:  # the running statistics, the same for every input
            return super().forward(x)
        if chunks == 1 and repeats == 1:
            if not self.update_stats:
                return self._normalise(x, self.running_mean, self.running_var, 1, 0.0)
            return super().forward(x)
        factors = self._factors(chunks * repeats) if self.update_stats else []
        if chunks == 1:  # R identical updates: keep (1 - f_1)…(1 - f_R) of the running values
            momentum = 1.0 - math.prod(1.0 - f for f in factors) if self.update_stats else 0.0
            y = self._normalise(x, self.running_mean, self.running_var, 1, momentum)
        else:
            C = x.shape[1]
            stats = self.running_mean.new_zeros(2, chunks, C)  # batch mean, unbiased variance
            view = x.reshape(x.shape[0] // chunks, chunks * C, *x.shape[2:])
            y = self._normalise(view, stats[0].view(-1), stats[1].view(-1), chunks, 1.0)
            y = y.view(x.shape)
            if factors:
                self._fold(stats, factors, repeats)
        if self.update_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(chunks * repeats)
        return y

    def _fold(self, stats: torch.Tensor, factors: list[float], repeats: int) -> None:
        """Fold ``stats`` (``(2, T, C)``: batch means, unbiased variances) into the running ones.

        ``factors``: one per update, ``repeats`` updates per input, in the order of the calls.
        """
        assert self.running_mean is not None and self.running_var is not None
        # `.data`: the running buffers are saved by earlier calls' autograd nodes (unused
        # in training mode); updating them through `.data` leaves their version alone
        running = [self.running_mean.data, self.running_var.data]
        means, variances = stats.unbind(0)
        means, variances = means.unbind(0), variances.unbind(0)
        for u, f in enumerate(factors):  # in the order of the sequential calls
            t = u // repeats
            torch._foreach_lerp_(running, [means[t], variances[t]], f)

    def _normalise(
        self,
        x: torch.Tensor,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        chunks: int,
        momentum: float,
    ) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if chunks > 1 and weight is not None and bias is not None:
            weight, bias = weight.repeat(chunks), bias.repeat(chunks)
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, self.eps)


def _batch_norms(bns: list[_BatchNorm], x: torch.Tensor, chunks: int, repeats: int) -> torch.Tensor:
    """Non-affine ``bns`` on consecutive channel ranges of ``x``, in one ``batch_norm`` call.

    The same as ``cat([bn(part, chunks, repeats) for bn, part in zip(bns, x.split(...))])``:
    BatchNorm is per channel, and each module's running statistics are folded from its
    channels' batch statistics as :class:`_BatchNorm` does with ``chunks > 1`` (the same
    updates, up to float rounding when ``chunks == 1``). Eval mode and affine modules take the
    per-module calls.
    """
    first = bns[0]
    if (
        not first.training
        or first.running_mean is None
        or any(bn.affine or bn.eps != first.eps for bn in bns)
    ):
        parts = x.split([bn.num_features for bn in bns], dim=1)
        return torch.cat([bn(p, chunks=chunks, repeats=repeats) for bn, p in zip(bns, parts)], 1)
    C = x.shape[1]
    stats = first.running_mean.new_zeros(2, chunks, C)  # batch mean, unbiased variance
    view = x.reshape(x.shape[0] // chunks, chunks * C, *x.shape[2:])
    y = F.batch_norm(view, stats[0].view(-1), stats[1].view(-1), None, None, True, 1.0, first.eps)
    start = 0
    for bn in bns:
        if bn.update_stats:
            factors = bn._factors(chunks * repeats)
            bn._fold(stats[:, :, start : start + bn.num_features], factors, repeats)
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(chunks * repeats)
        start += bn.num_features
    return y.view(x.shape)


@contextlib.contextmanager
def _frozen_statistics(modules: list[_BatchNorm]) -> Iterator[None]:
    for m in modules:
        m.update_stats = False
    try:
        yield
    finally:
        for m in modules:
            m.update_stats = True


class _Resample(nn.Module):
    """A cell input from level ``j`` brought to level ``i`` and ``C_out`` channels.

    Same level: ReLU → 1×1 conv → BN. From the finer level (s/2 → s): ReLU → 3×3 stride-2 conv
    → BN. From the coarser level (2s → s): bilinear upsampling to the node's size
    (``align_corners=False``), then ReLU → 1×1 conv → BN: the paper's "bilinear upsampling
    followed by a 1×1 convolution", in the order of the official release and the public port
    (resize first). BatchNorm is non-affine, as in DARTS' search network.
    """

    def __init__(self, C_in: int, C_out: int, direction: int) -> None:
        super().__init__()
        self.direction = direction  # target level - source level
        k, stride = (3, 2) if direction == 1 else (1, 1)
        self.conv = nn.Conv2d(C_in, C_out, k, stride=stride, padding=k // 2, bias=False)
        self.bn = _BatchNorm(C_out, affine=False)

    def forward(self, x: torch.Tensor, size: tuple[int, int], repeats: int = 1) -> torch.Tensor:
        """``x`` at level ``i`` with ``C_out`` channels; ``repeats``: see :class:`_BatchNorm`."""
        if self.direction == -1:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.bn(self.conv(F.relu(x)), repeats=repeats)


#: The search step's fused kernels (:class:`_StateEdges`): ``sep_conv_3x3`` and ``sep_conv_5x5``
#: run as one pair of separable layers (:meth:`_StateEdges._sep_pair`), the two full atrous convs
#: as one on maps of at most 4×4 (:meth:`_StateEdges._atrous_pair`), two BatchNorms per call
#: (:func:`_batch_norms`) and, on CPU, depthwise convs channels-last. The same function up to
#: float rounding in about 40 % fewer kernel calls (at search sizes on CPU the step is bound by
#: per-call overhead, not arithmetic). ``False`` restores the previous formulation, for
#: ``benchmarks/supernet_step.py --compare`` and ``tests/.../test_memory_options.py``.
_FUSED_KERNELS = True


class _ChannelsLast(torch.autograd.Function):
    """``x.contiguous(memory_format=torch.channels_last)`` whose gradient comes back contiguous.

    (The plain call passes the channels-last gradient of the conv on to the ops before it,
    whose NCHW kernels are several times slower on such a gradient.)
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def _reachable_taps(
    weight: torch.Tensor, H: int, W: int, dilation: int
) -> tuple[torch.Tensor, int, int]:
    """``weight`` trimmed to the taps that can see an ``H × W`` map, and its half-extents."""
    c = weight.shape[-1] // 2
    rh, rw = min(c, (H - 1) // dilation), min(c, (W - 1) // dilation)
    if rh < c or rw < c:
        weight = weight[:, :, c - rh : c + rh + 1, c - rw : c + rw + 1]
    return weight, rh, rw


def _conv(
    x: torch.Tensor, weight: torch.Tensor, dilation: int, groups: int, channels_last: bool = False
) -> torch.Tensor:
    """Stride-1 "same" convolution that skips the kernel taps which only ever see padding.

    A tap at offset ``o`` reads input row ``y + o``, inside the map only if ``|o| < H``; taps
    beyond that (e.g. a 5×5 conv at rate 2 on a 4×4 map) multiply zeros, so the kernel is
    trimmed to the reachable taps: the same result, and the same (zero) gradient for the
    trimmed taps, for less work on the small maps of the coarse levels. ``channels_last``: the
    convolution runs on a channels-last copy of ``x`` (no copy if ``x`` already is one) and the
    result comes back contiguous.
    """
    weight, rh, rw = _reachable_taps(weight, x.shape[-2], x.shape[-1], dilation)
    if channels_last:
        x = _ChannelsLast.apply(x)
    y = F.conv2d(x, weight, None, 1, (dilation * rh, dilation * rw), dilation, groups)
    return y.contiguous() if channels_last else y


class _Conv(nn.Module):
    """A stride-1 conv without bias (initialised as ``nn.Conv2d``), applied by :func:`_conv`."""

    def __init__(
        self, out_channels: int, in_per_group: int, k: int, groups: int, dilation: int = 1
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_per_group, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.groups, self.dilation = groups, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv(x, self.weight, self.dilation, self.groups)


class _StateEdges(nn.Module):
    """Every mixed op leaving one state of a cell, as a few grouped convolutions.

    Input ``(N, C, H, W)``; output ``(N, edges, C, H, W)``: for each edge ``e`` (to the ``e``-th
    block this state feeds) the mixed op ``Σ_k w[e, k] · op_k(state)`` over the seven ops other
    than ``none`` (its output is zero). The ``edges`` ops of one kind are the channel groups of one
    grouped conv, each with its own weights — exactly separate ops, since BatchNorm is per
    channel; the pools, their non-affine BatchNorm and the skip connection have no weights and
    are computed once (the fused kernels, :data:`_FUSED_KERNELS`, go further). Op definitions:
    :mod:`lightning_nas.ops` (``SepConv``, ``AtrousConv`` or, with ``atrous="separable"``,
    ``DilConv``), all with non-affine BatchNorm.

    ``forward(x, w, chunks, repeats)``: ``x`` may stack ``chunks`` transitions' states,
    interleaved sample by sample; every BatchNorm normalises each of them over its own samples
    and updates its running statistics as ``chunks`` separate calls would (:class:`_BatchNorm`).
    ``repeats``: the running statistics are updated as that many calls on ``x`` would.
    """

    def __init__(self, C: int, edges: int, atrous: str) -> None:
        super().__init__()
        self.C, self.edges = C, edges
        wide = edges * C
        self.atrous_full = atrous == "full"
        convs: dict[str, _Conv] = {}
        for k in (3, 5):
            for layer in ("1", "2"):
                convs[f"sep{k}_dw{layer}"] = _Conv(wide, 1, k, groups=wide)
                convs[f"sep{k}_pw{layer}"] = _Conv(wide, C, 1, groups=edges)
            if self.atrous_full:
                convs[f"atrous{k}"] = _Conv(wide, C, k, groups=1, dilation=2)
            else:  # DARTS' DilConv: depthwise dilated conv, then pointwise
                convs[f"atrous{k}_dw"] = _Conv(wide, 1, k, groups=wide, dilation=2)
                convs[f"atrous{k}_pw"] = _Conv(wide, C, 1, groups=edges)
        self.convs = nn.ModuleDict(convs)
        self.bns = nn.ModuleDict(
            {
                name: _BatchNorm(wide, affine=False)
                for name in ("sep3_1", "sep3_2", "sep5_1", "sep5_2", "atrous3", "atrous5")
            }
        )
        self.max_pool_bn = _BatchNorm(C, affine=False)
        self.avg_pool_bn = _BatchNorm(C, affine=False)

    def _bn(self, bn: nn.Module, x: torch.Tensor, chunks: int, repeats: int) -> torch.Tensor:
        assert isinstance(bn, _BatchNorm)
        return bn(x, chunks=chunks, repeats=repeats)

    def _sep(self, k: int, r_wide: torch.Tensor, chunks: int, repeats: int) -> torch.Tensor:
        x = self.convs[f"sep{k}_pw1"](self.convs[f"sep{k}_dw1"](r_wide))
        x = F.relu(self._bn(self.bns[f"sep{k}_1"], x, chunks, repeats), inplace=True)
        x = self.convs[f"sep{k}_pw2"](self.convs[f"sep{k}_dw2"](x))
        return self._bn(self.bns[f"sep{k}_2"], x, chunks, repeats)

    def _sep_pair(self, r: torch.Tensor, chunks: int, repeats: int) -> torch.Tensor:
        """``sep_conv_3x3`` and ``sep_conv_5x5`` of every edge as one pair of separable layers.

        Channels ``(kernel, edge, c)``: the 3×3 edges, then the 5×5 ones. Each layer is one
        depthwise conv (the 3×3 kernels zero-padded to 5×5 — the padded taps add exact zeros
        and get no gradient — beside the 5×5 ones; channels-last on CPU), one batched matmul
        for the ``2 · edges`` pointwise convs and one BatchNorm call for both kernels
        (:func:`_batch_norms`): the values of :meth:`_sep` for k = 3 and 5 up to float
        rounding, in 6 kernel calls instead of 12.
        """
        N, C, H, W = r.shape
        groups = 2 * self.edges
        wide = groups * C
        channels_last = torch.channels_last
        cl = r.device.type == "cpu"  # oneDNN's NHWC depthwise kernels are the fast ones
        x = r
        for layer in ("1", "2"):
            dw3, dw5 = (self.convs[f"sep{k}_dw{layer}"].weight for k in (3, 5))
            pw3, pw5 = (self.convs[f"sep{k}_pw{layer}"].weight for k in (3, 5))
            dw = torch.cat([F.pad(dw3, (1, 1, 1, 1)), dw5])  # (wide, 1, 5, 5), (kernel, edge, c)
            if layer == "1":
                # every (kernel, edge) reads the same state: channel multiplier `groups` on r
                # itself (nothing repeated or saved twice); output channels (c, kernel, edge)
                dw = dw.view(groups, C, 1, 5, 5).transpose(0, 1).reshape(wide, 1, 5, 5)
            dw, rh, rw = _reachable_taps(dw, H, W, 1)
            if cl and not x.is_contiguous(memory_format=channels_last):
                x = _ChannelsLast.apply(x)
            y = F.conv2d(x, dw, None, 1, (rh, rw), 1, C if layer == "1" else wide)
            # (kernel·edge, c, sample, y, x): one copy, then all pointwise convs as one bmm
            # (CPU's grouped conv loops over the groups; a broadcast matmul would copy the
            # weights once per sample and keep the copy for the backward pass)
            if layer == "1":
                y = y.unflatten(1, (C, groups)).permute(2, 1, 0, 3, 4)
            else:
                y = y.unflatten(1, (groups, C)).permute(1, 2, 0, 3, 4)
            pw = torch.cat([pw3, pw5]).view(groups, C, C)
            y = torch.bmm(pw, y.reshape(groups, C, N * H * W)).view(groups, C, N, H, W)
            x = y.permute(2, 0, 1, 3, 4).reshape(N, wide, H, W)
            bns = [self.bns[f"sep{k}_{layer}"] for k in (3, 5)]
            x = _batch_norms(bns, x, chunks, repeats)  # type: ignore[arg-type]
            if layer == "1":
                if cl and not x.is_contiguous(memory_format=channels_last):
                    x = _ChannelsLast.apply(x)  # before the ReLU: one saved copy, not two
                x = F.relu(x, inplace=True)
        return x

    def _atrous_pair(self, r: torch.Tensor, chunks: int, repeats: int) -> torch.Tensor:
        """Both full atrous convs (rate 2) as one matmul, on maps of at most 2×2.

        There only the centre tap of either kernel sees the map (:func:`_conv`), so the two
        convs are one 1×1 conv — a matmul — and their BatchNorms one call: :meth:`_atrous` for
        k = 3 and 5 up to float rounding. (Also valid up to 4×4, where both trim to 3×3, but
        the stacked kernels would be one more copy kept for the backward pass.) Channels
        ``(kernel, edge, c)``.
        """
        N, C, H, W = r.shape
        if H > 2 or W > 2:
            raise ValueError(f"_atrous_pair: maps of at most 2×2, got {H}×{W}")
        centres = [self.convs[f"atrous{k}"].weight[:, :, k // 2, k // 2] for k in (3, 5)]
        y = torch.matmul(torch.cat(centres), r.reshape(N, C, H * W)).view(N, -1, H, W)
        bns = [self.bns[f"atrous{k}"] for k in (3, 5)]
        return _batch_norms(bns, y, chunks, repeats)  # type: ignore[arg-type]

    def _atrous(
        self, k: int, r: torch.Tensor, r_wide: torch.Tensor | None, chunks: int, repeats: int
    ) -> torch.Tensor:
        if self.atrous_full:
            x = self.convs[f"atrous{k}"](r)
        else:
            assert r_wide is not None
            x = self.convs[f"atrous{k}_pw"](self.convs[f"atrous{k}_dw"](r_wide))
        return self._bn(self.bns[f"atrous{k}"], x, chunks, repeats)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, chunks: int = 1, repeats: int = 1
    ) -> torch.Tensor:
        N, C, H, W = x.shape
        m = self.edges
        r = F.relu(x)
        r_wide = None
        if not (self.atrous_full and _FUSED_KERNELS):
            r_wide = r.unsqueeze(1).expand(N, m, C, H, W).reshape(N, m * C, H, W)
        if _FUSED_KERNELS:
            sep3, sep5 = self._sep_pair(r, chunks, repeats).view(N, 2, m * C, H, W).unbind(1)
        else:
            assert r_wide is not None
            sep3, sep5 = (self._sep(k, r_wide, chunks, repeats) for k in (3, 5))
        conv_outputs = {
            "sep_conv_3x3": sep3,
            "sep_conv_5x5": sep5,
        }
        if _FUSED_KERNELS and self.atrous_full and H <= 2 and W <= 2:
            a3, a5 = self._atrous_pair(r, chunks, repeats).view(N, 2, m * C, H, W).unbind(1)
        else:
            a3, a5 = (self._atrous(k, r, r_wide, chunks, repeats) for k in (3, 5))
        conv_outputs["atrous_conv_3x3"], conv_outputs["atrous_conv_5x5"] = a3, a5
        max_pool = F.max_pool2d(x, 3, 1, 1)
        avg_pool = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        free_outputs = {
            "max_pool_3x3": self.max_pool_bn(max_pool, chunks=chunks, repeats=repeats),
            "avg_pool_3x3": self.avg_pool_bn(avg_pool, chunks=chunks, repeats=repeats),
            "skip_connect": x,
        }
        w = w.view(1, m, -1, 1, 1, 1)  # (1, edges, 8, 1, 1, 1)
        out: torch.Tensor | None = None
        for name, y in conv_outputs.items():
            term = (y.view(N, m, C, H, W), w[:, :, _OP_COLUMNS[name]])
            out = term[0] * term[1] if out is None else out.addcmul_(*term)
        assert out is not None
        for name, y in free_outputs.items():
            out.addcmul_(y.unsqueeze(1), w[:, :, _OP_COLUMNS[name]])
        return out


class _Node(nn.Module):
    """Lattice node ``(l, i)``: one cell applied to each incoming transition, then β-summed.

    The cell's weights are shared by its D ≤ 3 applications (eq. 6, the public port's
    ``for states in all_states``), which run as one batch: the preprocessed ``h[l-1]`` of the
    transitions interleaved along the batch dimension (sample ``n`` of transition ``d`` at
    ``n·D + d``). Every BatchNorm of the cell normalises each transition over its own N samples
    and updates its running statistics once per transition, in transition order
    (:class:`_BatchNorm` with ``chunks=D``): outputs, gradients and running statistics are those
    of running the cell separately on each transition in turn (tested against that loop).
    The ``h[l-2]`` input is the same for every transition, so its preprocessing and edges are
    computed once, on N samples, and broadcast; their running statistics take the D identical
    updates the loop would make (``repeats=D``; the public port preprocesses it once, so there
    that one BatchNorm is updated once per node).

    Args:
        C: Channels of one block (``F · 2^i``).
        blocks: B.
        sources: ``(source level, source channels)`` of each incoming transition.
        level: This node's level ``i``.
        prev_prev_channels: Channels of ``^sH^{l-2}``, or ``None`` when that node does not exist
            (its edges are then absent, as in the public port).
        partial_channels: K of PC-DARTS (1: every channel goes through the mixed ops).
        atrous: ``"full"`` or ``"separable"`` atrous convs.
    """

    def __init__(
        self,
        C: int,
        blocks: int,
        sources: list[tuple[int, int]],
        level: int,
        prev_prev_channels: int | None,
        partial_channels: int,
        atrous: str,
    ) -> None:
        super().__init__()
        self.C, self.blocks, self.K = C, blocks, partial_channels
        self.source_levels = [j for j, _ in sources]
        self.preprocess = nn.ModuleList(_Resample(c, C, level - j) for j, c in sources)
        Cp = C // partial_channels
        self.preprocess_pp: _Resample | None = None
        self.edges_pp: _StateEdges | None = None
        if prev_prev_channels is not None:
            self.preprocess_pp = _Resample(prev_prev_channels, C, 0)
            self.edges_pp = _StateEdges(Cp, blocks, atrous)
        # state 1 = h[l-1] feeds every block; state 2 + k = block k feeds blocks k+1 .. B-1
        self.edges = nn.ModuleList(
            _StateEdges(Cp, blocks - max(0, j - 1), atrous) for j in range(1, blocks + 1)
        )
        self.batch_norms = [m for m in self.modules() if isinstance(m, _BatchNorm)]

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The channels that go through the mixed ops (C/K) and the bypass (the rest)."""
        if self.K == 1:
            return x, None
        Cp = self.C // self.K
        return x[:, :Cp], x[:, Cp:]

    def _block(self, mixed: torch.Tensor, bypass: torch.Tensor | None) -> torch.Tensor:
        """A block's output; with K > 1, cat(mixed, bypass) and PC-DARTS' channel shuffle."""
        if bypass is None:
            return mixed.contiguous()
        N, _, H, W = mixed.shape
        x = torch.cat([mixed, bypass], dim=1).view(N, self.K, self.C // self.K, H, W)
        return x.transpose(1, 2).reshape(N, self.C, H, W)

    def forward(
        self,
        prevs: list[torch.Tensor],
        prev_prev: torch.Tensor | None,
        alpha_weights: list[torch.Tensor],
        betas: torch.Tensor,
        size: tuple[int, int],
    ) -> torch.Tensor:
        D = len(prevs)
        # (N·D, C, H, W), sample-major: sample n of transition d at n·D + d
        x1 = torch.stack([p(h, size) for p, h in zip(self.preprocess, prevs)], dim=1).flatten(0, 1)
        N = x1.shape[0] // D
        mixed, rest = self._split(x1)
        acc = self.edges[0](mixed, alpha_weights[1], chunks=D)  # (N·D, B, C/K, H, W)
        if self.preprocess_pp is not None and self.edges_pp is not None and prev_prev is not None:
            # the same for every transition: computed once, statistics updated D times
            mixed, bypass = self._split(self.preprocess_pp(prev_prev, size, repeats=D))
            shared = self.edges_pp(mixed, alpha_weights[0], repeats=D)  # (N, B, C/K, H, W)
            acc = (acc.view(N, D, *acc.shape[1:]) + shared.unsqueeze(1)).view(acc.shape)
            if rest is not None and bypass is not None:
                rest = rest.reshape(N, D, *rest.shape[1:]) + bypass.unsqueeze(1)
                rest = rest.view(N * D, *rest.shape[2:])
        outputs = []
        beta_weights = betas.view(1, 1, D).expand(N, 1, D)
        for b in range(self.blocks):
            block = self._block(acc[:, 0], rest)  # (N·D, C, H, W)
            # Σ_d β_d · block of transition d: (N, 1, D) @ (N, D, C·H·W), one batched matrix
            # product (it saves the block itself, which is saved anyway, not a copy)
            outputs.append(torch.bmm(beta_weights, block.view(N, D, -1)).view(N, *block.shape[1:]))
            if b + 1 < self.blocks:
                mixed, bypass = self._split(block)
                acc = acc[:, 1:] + self.edges[b + 1](mixed, alpha_weights[b + 2], chunks=D)
                rest = None if rest is None or bypass is None else rest + bypass
        return torch.cat(outputs, dim=1)


class _ASPP(nn.Module):
    """Search-time ASPP (paper §4.1): 1×1 conv, one 3×3 conv at ``rate``, image pooling.

    Each branch has ``C`` filters (conv + BN + ReLU; the pooled branch has a bias and no BN, so
    it also works on one image per device); concat → 1×1 conv + BN + ReLU → 1×1 conv to the
    classes. When ``rate`` is at least the feature size only the centre tap of the 3×3 conv sees
    data, and only that tap is computed (:func:`_conv`).
    """

    def __init__(self, C: int, rate: int, num_classes: int) -> None:
        super().__init__()
        self.rate = rate
        self.conv1 = nn.Conv2d(C, C, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(C)
        self.conv3 = nn.Conv2d(C, C, 3, padding=rate, dilation=rate, bias=False)
        self.bn3 = nn.BatchNorm2d(C)
        self.pool = nn.Conv2d(C, C, 1)
        self.project = nn.Sequential(
            nn.Conv2d(3 * C, C, 1, bias=False), nn.BatchNorm2d(C), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Conv2d(C, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        H, W = x.shape[-2:]
        atrous = _conv(x, self.conv3.weight, self.rate, 1)
        pooled = F.relu(self.pool(F.adaptive_avg_pool2d(x, 1))).expand(-1, -1, H, W)
        branches = [F.relu(self.bn1(self.conv1(x))), F.relu(self.bn3(atrous)), pooled]
        return self.classifier(self.project(torch.cat(branches, dim=1)))


class AutoDeepLabSpace(AutoDeepLabLatency, SearchSpace):
    """The Auto-DeepLab supernet: shared cell α, network-level β over a layer × stride lattice.

    Stem (three 3×3 convs + BN, strides 2, 1, 2, ReLU between; ``stem_channels``,
    ``stem_channels``, ``2 · stem_channels`` filters; the release has 64, 64, 128 at F = 20) to
    stride 4; then ``layers`` layers, node ``(l, i)`` at stride ``strides[i]`` with
    ``blocks · filter_multiplier · 2^i`` channels; an ASPP on every node of the last layer, each
    giving logits that are upsampled bilinearly to the input size and summed. The first layer is
    at stride 4 or 8. One cell (one set of weights) per node serves all its incoming
    transitions, each normalised by the cell's BatchNorms with its own batch statistics, as
    separate applications (eq. 6, the public port). Cell ops use non-affine BatchNorm (as DARTS'
    search network). A missing ``^sH^{l-2}`` (layer 0, and levels ``l`` and ``l + 1`` of layer
    ``l``, just reached) leaves the cell without that input, as in the public port. See the
    module docstring for the β layout.

    Args:
        num_classes: Number of output classes.
        in_channels: Number of input image channels.
        layers: L, number of cell layers.
        strides: Output stride of each level; starts at 4 and doubles.
        filter_multiplier: F; a block at stride ``s`` has ``F · s / 4`` channels.
        blocks: B, blocks per cell.
        stem_channels: Filters of the first two stem convs (default ``4 · F``).
        checkpoint_cells: Recompute each node's cells in the backward pass
            (``torch.utils.checkpoint``, non-reentrant) instead of storing their activations;
            gradients are identical, and BatchNorm statistics are updated once.
        partial_channels: K of PC-DARTS: only ``C / K`` channels of each state go through the
            mixed ops, the rest bypass them, then channels are shuffled; K must divide F.
        atrous: How ``atrous_conv_KxK`` is built in the supernet: ``"full"`` — a full K×K conv
            at rate 2, as the official release and :func:`~lightning_nas.ops.make_autodeeplab_op`
            define it (36.3M of the supernet's 46.0M weights at F = 8, L = 12);
            ``"separable"`` — a depthwise dilated conv + 1×1 conv (DARTS' DilConv, the public
            PyTorch port's choice; 12.7M weights in all). The derived network has its own
            class and ops.
        alpha_init_std: α and β start as ``alpha_init_std · randn`` (the paper's 1e-3).

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> space = AutoDeepLabSpace(num_classes=5, layers=3, filter_multiplier=2)
        >>> tuple(space(torch.randn(2, 3, 32, 32)).shape)
        (2, 5, 32, 32)
        >>> {k: tuple(v.shape) for k, v in space.arch_parameters().items()}
        {'alphas': (20, 8), 'betas': (3, 4, 3)}
        >>> g = space.derive()
        >>> len(g.cell), len(g.path), g.path[0] in (0, 1)
        (10, 3, True)
    """

    def __init__(
        self,
        num_classes: int = 19,
        in_channels: int = 3,
        layers: int = 12,
        strides: tuple[int, ...] = (4, 8, 16, 32),
        filter_multiplier: int = 8,
        blocks: int = 5,
        stem_channels: int | None = None,
        checkpoint_cells: bool = False,
        partial_channels: int = 1,
        atrous: Literal["full", "separable"] = "full",
        alpha_init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        check_min_ints(
            "AutoDeepLabSpace",
            (
                ("num_classes", num_classes, 1),
                ("in_channels", in_channels, 1),
                ("layers", layers, 1),
                ("filter_multiplier", filter_multiplier, 1),
                ("blocks", blocks, 1),
                ("partial_channels", partial_channels, 1),
                ("stem_channels", 1 if stem_channels is None else stem_channels, 1),
            ),
        )
        strides = tuple(strides)
        if (
            not strides
            or strides[0] != 4
            or any(isinstance(s, bool) or not isinstance(s, int) for s in strides)
            or any(b != 2 * a for a, b in zip(strides, strides[1:]))
        ):
            raise ConfigError(
                f"AutoDeepLabSpace: strides must start at 4 (the stem's stride) and double at "
                f"each level, e.g. (4, 8, 16, 32); got {strides!r}"
            )
        if filter_multiplier % partial_channels:
            raise ConfigError(
                f"AutoDeepLabSpace: partial_channels ({partial_channels}) must divide "
                f"filter_multiplier ({filter_multiplier})"
            )
        if atrous not in ("full", "separable"):
            raise ConfigError(
                f"AutoDeepLabSpace: atrous must be 'full' or 'separable', got {atrous!r}"
            )
        if not alpha_init_std >= 0:
            raise ConfigError(
                f"AutoDeepLabSpace: alpha_init_std must be >= 0, got {alpha_init_std!r}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.layers = layers
        self.strides = strides
        self.filter_multiplier = filter_multiplier
        self.blocks = blocks
        self.checkpoint_cells = checkpoint_cells
        self.partial_channels = partial_channels
        self.atrous = atrous
        n = len(strides)
        stem_c = 4 * filter_multiplier if stem_channels is None else stem_channels

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_c),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_c, stem_c, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_c),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_c, 2 * stem_c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * stem_c),
        )

        def channels(layer: int, i: int) -> int:  # output channels of node (l, i); l = -1: stem
            return 2 * stem_c if layer < 0 else blocks * filter_multiplier * 2**i

        #: levels of the nodes that exist at each layer (reachable from the stem at level 0)
        self.levels_at: list[list[int]] = [
            list(range(min(layer + 2, n))) for layer in range(layers)
        ]
        previous: list[int] = [0]  # layer -1: the stem
        nodes = {}
        for layer in range(layers):
            for i in self.levels_at[layer]:
                sources = [(j, channels(layer - 1, j)) for j in (i - 1, i, i + 1) if j in previous]
                pp_levels = self.levels_at[layer - 2] if layer >= 2 else [0] if layer == 1 else []
                nodes[f"{layer}_{i}"] = _Node(
                    C=filter_multiplier * 2**i,
                    blocks=blocks,
                    sources=sources,
                    level=i,
                    prev_prev_channels=channels(layer - 2, i) if i in pp_levels else None,
                    partial_channels=partial_channels,
                    atrous=atrous,
                )
            previous = self.levels_at[layer]
        self.nodes = nn.ModuleDict(nodes)
        self.aspp = nn.ModuleDict(
            {
                str(i): _ASPP(channels(layers - 1, i), max(1, 96 // strides[i]), num_classes)
                for i in self.levels_at[-1]
            }
        )

        num_edges = sum(b + 2 for b in range(blocks))
        self.alphas = nn.Parameter(
            alpha_init_std * torch.randn(num_edges, len(AUTODEEPLAB_PRIMITIVES))
        )
        self.betas = nn.Parameter(alpha_init_std * torch.randn(layers, n, 3))
        mask = torch.zeros(layers, n, 3, dtype=torch.bool)
        for j in range(n):
            for d in range(3):
                mask[:, j, d] = 0 <= j + d - 1 < n
        self.register_buffer("transition_mask", mask, persistent=False)
        # α rows of the edges leaving each state (0: h[l-2], 1: h[l-1], 2 + k: block k), in the
        # order of the blocks they feed
        order, self._edges_per_state = [], []
        for j in range(blocks + 1):
            targets = range(max(0, j - 1), blocks)
            order += [b * (b + 3) // 2 + j for b in targets]
            self._edges_per_state.append(len(targets))
        self.register_buffer("edge_order", torch.tensor(order), persistent=False)

    # ----------------------------------------------------------------- forward
    def transition_probabilities(self) -> torch.Tensor:
        """``(layers, levels, 3)``: β softmax over each node's existing outgoing transitions.

        Transitions that leave the lattice get probability 0; ``[0, j > 0]`` rows are unused.
        """
        logits = self.betas.masked_fill(~self.transition_mask, float("-inf"))
        return torch.softmax(logits, dim=-1)

    def _node_sizes(self, stem_size: tuple[int, int]) -> list[tuple[int, int]]:
        sizes = [stem_size]
        for _ in self.strides[1:]:
            h, w = sizes[-1]
            sizes.append(((h + 1) // 2, (w + 1) // 2))
        return sizes

    def _run_node(self, node: _Node, *args: Any) -> torch.Tensor:
        if self.checkpoint_cells and torch.is_grad_enabled():
            return checkpoint(
                node,
                *args,
                use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), _frozen_statistics(node.batch_norms)),
            )
        return node(*args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size."""
        weights = torch.softmax(self.alphas, dim=-1)[self.edge_order]
        per_state = list(weights.split(self._edges_per_state))
        probs = self.transition_probabilities()
        stem = self.stem(x)
        sizes = self._node_sizes((stem.shape[-2], stem.shape[-1]))
        prev_prev: dict[int, torch.Tensor] = {}
        prev: dict[int, torch.Tensor] = {0: stem}
        for layer in range(self.layers):
            current = {}
            for i in self.levels_at[layer]:
                node = self.nodes[f"{layer}_{i}"]
                assert isinstance(node, _Node)
                js = node.source_levels
                betas = torch.stack([probs[layer, j, i - j + 1] for j in js])
                current[i] = self._run_node(
                    node, [prev[j] for j in js], prev_prev.get(i), per_state, betas, sizes[i]
                )
            prev_prev, prev = prev, current
        logits = None
        for i, head in self.aspp.items():
            y = F.interpolate(head(prev[int(i)]), size=x.shape[-2:], mode="bilinear",
                              align_corners=False)  # fmt: skip
            logits = y if logits is None else logits + y
        assert logits is not None
        return logits

    # ----------------------------------------------------------------- protocol
    def arch_parameters(self) -> dict[str, nn.Parameter]:
        """``{"alphas": (Σ(b+2), 8), "betas": (layers, levels, 3)}``."""
        return {"alphas": self.alphas, "betas": self.betas}

    def _source_nodes(self) -> list[tuple[int, int]]:
        """``(layer, level)`` of every node with outgoing transitions (layer -1: the stem)."""
        return [(-1, 0)] + [
            (layer, i) for layer in range(self.layers - 1) for i in self.levels_at[layer]
        ]

    def arch_distributions(self) -> dict[str, torch.Tensor]:
        """α softmax rows ``(Σ(b+2), 8)``; β as the transition probabilities of each source node.

        ``betas`` is ``(number of source nodes, 3)``: one row per node that has outgoing
        transitions (the stem, then layer by layer), columns to the finer / same / coarser
        level; a transition that does not exist has probability 0.
        """
        probs = self.transition_probabilities().detach()
        rows = torch.stack([probs[layer + 1, i] for layer, i in self._source_nodes()])
        return {"alphas": torch.softmax(self.alphas.detach(), dim=-1), "betas": rows}

    def arch_labels(self) -> dict[str, tuple[list[str], list[str]]]:
        """α rows ``b<block>_in<j>``; β rows ``stem`` / ``l<layer>_s<stride>``."""
        alpha_rows = [f"b{b}_in{j}" for b in range(self.blocks) for j in range(b + 2)]
        beta_rows = [
            "stem" if layer < 0 else f"l{layer}_s{self.strides[i]}"
            for layer, i in self._source_nodes()
        ]
        return {
            "alphas": (alpha_rows, list(AUTODEEPLAB_PRIMITIVES)),
            "betas": (beta_rows, list(_DIRECTIONS)),
        }

    def transition_log_probabilities(self) -> torch.Tensor:
        """``(layers, levels, 3)`` float64 log transition probabilities (``-inf``: none)."""
        logits = self.betas.detach().double().masked_fill(~self.transition_mask, float("-inf"))
        return torch.log_softmax(logits, dim=-1)

    def derive_path(self) -> list[int]:
        """The Viterbi (maximum-probability) level sequence, starting from the stem at level 0."""
        return viterbi_path(self.transition_log_probabilities().cpu(), start_level=0)

    def derive(self) -> AutoDeepLabGenotype:
        """Cell by :func:`derive_cell` on softmax(α); path by Viterbi on the β probabilities."""
        cell = derive_cell(torch.softmax(self.alphas.detach(), dim=-1), self.blocks)
        return AutoDeepLabGenotype(cell=cell, path=tuple(self.derive_path()), strides=self.strides)

    def derived_statistics(self) -> dict[str, float]:
        """Skip connections in the derived cell, the path's final stride and log probability."""
        genotype = self.derive()
        log_probs = self.transition_log_probabilities().cpu()
        return {
            "skip_connections": float(sum(op == "skip_connect" for op, _ in genotype.cell)),
            "path_final_stride": float(genotype.output_strides()[-1]),
            "path_log_probability": path_log_probability(log_probs, genotype.path),
        }

    def arch_figures(self) -> dict[str, Any]:
        """``{"lattice": Figure}``: β drawn on the lattice, the decoded path in red."""
        from matplotlib.figure import Figure

        probs = self.transition_probabilities().detach().cpu()
        path = [0, *self.derive_path()]
        n = len(self.strides)
        fig = Figure(figsize=(max(5.0, 1.5 + 0.55 * (self.layers + 1)), 1.8 + 0.6 * n))
        ax = fig.subplots()
        for layer, j in self._source_nodes():
            for d in range(3):
                i = j + d - 1
                if 0 <= i < n and i in self.levels_at[layer + 1]:
                    p = float(probs[layer + 1, j, d])
                    ax.plot([layer, layer + 1], [j, i], color="tab:blue", lw=0.3 + 4.0 * p,
                            alpha=0.15 + 0.85 * p, solid_capstyle="round")  # fmt: skip
        ax.plot(range(-1, self.layers), path, color="tab:red", lw=2.5, marker="o", zorder=3)
        xs = [layer for layer in range(self.layers) for _ in self.levels_at[layer]]
        ys = [i for layer in range(self.layers) for i in self.levels_at[layer]]
        ax.scatter([-1, *xs], [0, *ys], s=12, color="black", zorder=4)
        ax.set_xticks(range(-1, self.layers), ["stem", *map(str, range(self.layers))])
        ax.set_yticks(range(n), [str(s) for s in self.strides])
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("output stride")
        ax.set_title("β: width ∝ transition probability; red: Viterbi path", fontsize=10)
        fig.tight_layout()
        return {"lattice": fig}
