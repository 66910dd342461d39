"""FasterSeg (Chen et al., ICLR 2020): multi-resolution branch search with searchable widths.

The supernet (reference §3.1, the release's ``search/model_search.py``): a stem to stride 8, then
``layers`` (L = 16) layers over the strides {8, 16, 32}. The cell of layer ``l`` at scale ``j``
(0 = 1/8, 1 = 1/16, 2 = 1/32) is a DARTS-style mixture of the five
:data:`~.genotype.FASTERSEG_PRIMITIVES` (skip, conv, zoomed conv, conv ×2,
zoomed conv ×2) weighted by ``softmax(α)``; it gives two outputs, one at its own scale and — except
at 1/32 and in the last layer — one ×2 down (a second mixture with stride 2 and twice the
channels, sharing the cell's α). A cell at 1/16 or 1/32 with two inputs runs on both, and
``softmax(β)`` mixes the results: ``β0 · cell(the finer cell's down output) + β1 · cell(its own
scale's previous output)``. The width of every node is a
"super-kernel": ops are built at the full width ``Fch · s`` (96 / 192 / 384) and run sliced to
the sampled width ``{4, 6, 8, 10, 12} / 12`` of it; the width γ is sampled by hard Gumbel-softmax
(one width per node and step, straight-through: the chosen width's soft score multiplies the
output), every width has its own BatchNorm (statistics and γ/β, the release's switchable BN).

Two architecture sets share the supernet's weights (co-search): the **teacher** (α, β; always the
widest) and the **student** (α, β, γ; stem/head width 8/12). Heads on the last layer (search-time
heads of the release): 1/8, 1/16, 1/32 and the two fused pairs (1/32 + 1/8), (1/32 + 1/16); the
loss sums cross-entropy over all of them, for every pass.

Passes per step (the sandwich rule of slimmable networks): the weight step (``set_phase("weight")``)
runs the teacher at full width and the student at a sampled width, its widest and its narrowest;
the architecture step runs the same passes as the release's ``Architect`` does
(``arch_sandwich: false``: teacher and sampled student only). Samples come from a
generator seeded with ``(sample_seed, sample_step)``, ``sample_step`` a buffer counted up per
sample: every DDP rank draws the same widths, and a resumed search draws the same as an
uninterrupted one.

Latency (reference §3.2): :meth:`FasterSegSpace.expected_latency` is the differentiable expected
latency of the student from a latency table of the fixed ops (``lightning-nas latency build``):
the expected op latency of every cell (over α, input and output width) accumulated along the
β-weighted paths to each final scale and summed over the three scales — by default with the
release's ``forward_latency`` accumulation (``latency_recursion: release``), or exactly
(``latency_recursion: exact``);
:meth:`~FasterSegSpace.latency_components` gives the decoupled terms the release weights 1/500,
497/500, 2/500 (``callbacks.LatencyRegularization``).

Derivation: :mod:`lightning_nas.methods.fasterseg.derive` (the release's ``network_metas``);
:func:`released_genotypes` decodes the release's own tensors
(``experiments/genotypes/fasterseg_released_arch_params.json``) into the published FasterSeg.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.losses import OhemCrossEntropy
from lightning_nas.methods.fasterseg.derive import derive_genotype, select_lasts
from lightning_nas.methods.fasterseg.genotype import FasterSegGenotype
from lightning_nas.methods.fasterseg.latency import FasterSegLatency
from lightning_nas.methods.fasterseg.ops import (
    FASTERSEG_PRIMITIVES,
    ConvNorm,
    Head,
    make_fasterseg_op,
    make_fasterseg_stem,
    num_filters,
    stem_channels,
)
from lightning_nas.methods.fasterseg.release import load_released_arch
from lightning_nas.spaces.base import SearchSpace

__all__ = ["BRANCH_PAIRS", "FasterSegOutput", "FasterSegSpace"]

SCALES = (8, 16, 32)
HEADS = ("8", "16", "32", "32+8", "32+16")
"""The search-time heads: per final scale and the two fused pairs the derivation chooses from."""
BRANCH_PAIRS = ((2, 0), (2, 1))
"""The student's final branch pairs FasterSeg chooses between (scale indices: 1/32 with 1/8 or
1/16)."""
_PAIR_HEAD = {(2, 0): "32+8", (2, 1): "32+16"}
SETS = ("teacher", "student")


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class _MixedOp(nn.Module):
    """Σ_o softmax(α)_o · op_o(x) at a chosen output width, times the width scores."""

    def __init__(
        self,
        in_choices: Sequence[int],
        out_choices: Sequence[int],
        stride: int,
        shared_bn_affine: bool = False,
    ) -> None:
        super().__init__()
        self.ops = nn.ModuleList(
            make_fasterseg_op(
                name,
                max(in_choices),
                max(out_choices),
                stride,
                in_choices,
                out_choices,
                shared_bn_affine=shared_bn_affine,
            )
            for name in FASTERSEG_PRIMITIVES
        )

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, c_out: int, score: Any
    ) -> torch.Tensor:
        out = sum(w * op(x, c_out) for w, op in zip(weights, self.ops))
        return out * score if isinstance(score, torch.Tensor) else out


class _SearchHeads(nn.Module):
    """The release's search-time refinement and five heads, at one head width."""

    def __init__(self, num_classes: int, Fch: int, r: float) -> None:
        super().__init__()
        n8, n16, n32 = (num_filters(s, Fch, r) for s in SCALES)
        self.refine16 = nn.ModuleList([ConvNorm(n16, n8, 1), ConvNorm(2 * n8, n8, 3)])
        self.refine32 = nn.ModuleList(
            [ConvNorm(n32, n16, 1), ConvNorm(2 * n16, n16, 3), ConvNorm(n16, n8, 1),
             ConvNorm(2 * n8, n8, 3)]
        )  # fmt: skip
        self.heads = nn.ModuleDict(
            {
                "8": Head(n8, num_classes),
                "16": Head(n8, num_classes),
                "32": Head(n8, num_classes),
                "32+8": Head(2 * n8, num_classes),
                "32+16": Head(2 * n8, num_classes),
            }
        )

    def forward(self, o8: torch.Tensor, o16: torch.Tensor, o32: torch.Tensor) -> dict:
        r16, r32 = self.refine16, self.refine32
        f16 = r16[1](torch.cat([_resize(r16[0](o16), o8), o8], dim=1))
        f32 = r32[1](torch.cat([_resize(r32[0](o32), o16), o16], dim=1))
        f32 = r32[3](torch.cat([_resize(r32[2](f32), o8), o8], dim=1))
        return {
            "8": self.heads["8"](o8),
            "16": self.heads["16"](f16),
            "32": self.heads["32"](f32),
            "32+8": self.heads["32+8"](torch.cat([o8, f32], dim=1)),
            "32+16": self.heads["32+16"](torch.cat([f16, f32], dim=1)),
        }


@dataclass
class FasterSegOutput:
    """What the supernet returns in training mode.

    Attributes:
        passes: ``(name, predictions by head)`` of every pass of the step, predictions at 1/8
            resolution (e.g. ``("teacher", ...)``, ``("student/max", ...)``).
        student: The main logits of the student's sampled pass (what loss terms see).
        teacher: The teacher's logits on the same head (``None`` without a teacher).
    """

    passes: list[tuple[str, dict[str, torch.Tensor]]]
    student: torch.Tensor
    teacher: torch.Tensor | None = None


class FasterSegSpace(FasterSegLatency, SearchSpace):
    """FasterSeg's supernet with a teacher and a student architecture (co-search).

    Args:
        num_classes: Output classes (linked from the DataModule by the CLI).
        layers: L, the number of layers (16; at least 8 for a branch ending at 1/32).
        Fch: Base channels: full width at scale s is ``Fch · s`` (12 → 96 / 192 / 384).
        widths: Width choices of the student in twelfths of full width (``{4, 6, 8, 10,
            12}``); the teacher always uses the largest.
        student_stem_head_width: Stem and head width of the student, twelfths (8, 8).
        teacher_stem_head_width: Those of the teacher (12, 12).
        teacher: Co-search a teacher (the release does); ``False``: the student alone.
        sandwich: Weight steps also train the student at its widest and narrowest widths.
        arch_sandwich: Architecture steps do too (the release's ``Architect`` evaluates the
            same loss as the weight step); ``False``: teacher and sampled student only (half
            the passes).
        gumbel_tau: Gumbel-softmax temperature of the width sampling.
        sample_seed: Seed of the width sampling (shared by every DDP rank).
        lasts: The student's final branch pair, ``[2, 1]`` or ``[2, 0]``; ``null`` (default)
            chooses as the release does from the recorded per-pair mIoU and latency
            (:meth:`record_branch_scores`), ``[2, 1]`` until something is recorded.
        target_latency_ms: Target of the release's branch objective ``mIoU · (lat/target)^-0.07``.
        arch_init: Initial value of every architecture logit (the release: 1e-3).
        ohem_thresh: If set, the search loss is OHEM cross-entropy with this probability
            threshold and at least 1/16 of the pixels (ignored ones included) kept (the release:
            0.7, :class:`~lightning_nas.losses.OhemCrossEntropy`); ``None``: plain
            cross-entropy.
        latency_scale_weights: Weights of the expected latencies of the paths ending at 1/8,
            1/16 and 1/32 in :meth:`expected_latency` (default ``(1, 1, 1)``: the release's
            unweighted sum; its 3/12, 4/12, 5/12 of Dec 2019 were removed in March 2020).
        latency_recursion: How :meth:`expected_latency` accumulates the cells' latencies along
            the β-weighted paths. ``"release"`` (default): as the release's
            ``forward_latency`` does, quirks included (β of the 1/16 scale gets no latency
            gradient; see :meth:`~FasterSegLatency._release_paths`); ``"exact"``: the expected
            latency of the paths (for a one-hot architecture: the table sum along them).
        shared_bn_affine: The supernet's switchable BatchNorms share one affine γ/β across
            widths (earlier versions of this project); ``False`` (default): a private
            BatchNorm per width, as the release's ``USBatchNorm2d``
            (:class:`~lightning_nas.methods.fasterseg.ops.SlimBatchNorm2d`).

    Example:
        >>> space = FasterSegSpace(num_classes=3, layers=8, Fch=1, widths=(6, 12))
        >>> sorted(space.arch_parameters())[:3]
        ['alpha_student_0', 'alpha_student_1', 'alpha_student_2']
        >>> tuple(space.arch_parameters()["ratio_student_2"].shape)
        (6, 2)
    """

    def __init__(
        self,
        num_classes: int = 19,
        layers: int = 16,
        Fch: int = 12,
        widths: tuple[int, ...] = (4, 6, 8, 10, 12),
        student_stem_head_width: tuple[int, int] = (8, 8),
        teacher_stem_head_width: tuple[int, int] = (12, 12),
        teacher: bool = True,
        sandwich: bool = True,
        arch_sandwich: bool = True,
        gumbel_tau: float = 1.0,
        sample_seed: int = 0,
        lasts: tuple[int, int] | None = None,
        target_latency_ms: float = 8.3,
        arch_init: float = 1e-3,
        ohem_thresh: float | None = None,
        latency_scale_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        latency_recursion: Literal["release", "exact"] = "release",
        shared_bn_affine: bool = False,
    ) -> None:
        super().__init__()
        check_min_ints(
            "FasterSegSpace",
            (("num_classes", num_classes, 1), ("layers", layers, 8), ("Fch", Fch, 1)),
        )
        widths = tuple(widths)
        if (
            not widths
            or any(
                isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 12 for w in widths
            )
            or len(set(widths)) != len(widths)
        ):
            raise ConfigError(
                f"FasterSegSpace: widths must be distinct integers in 1..12 (twelfths of full "
                f"width), got {list(widths)!r}"
            )
        for key, value in (
            ("student_stem_head_width", student_stem_head_width),
            ("teacher_stem_head_width", teacher_stem_head_width),
        ):
            if len(tuple(value)) != 2 or not all(
                isinstance(v, int) and 1 <= v <= 12 for v in value
            ):
                raise ConfigError(
                    f"FasterSegSpace: {key} must be two integers in 1..12, got {value!r}"
                )
        if lasts is not None and tuple(lasts) not in _PAIR_HEAD:
            raise ConfigError(
                f"FasterSegSpace: lasts must be [2, 1], [2, 0] or null, got {lasts!r}"
            )
        if not gumbel_tau > 0:
            raise ConfigError(f"FasterSegSpace: gumbel_tau must be > 0, got {gumbel_tau!r}")
        self.num_classes = num_classes
        self.layers = layers
        self.Fch = Fch
        self.widths = tuple(sorted(widths))
        self.stem_head = {
            "student": tuple(student_stem_head_width),
            "teacher": tuple(teacher_stem_head_width),
        }
        self.sets = SETS if teacher else ("student",)
        self.sandwich = sandwich
        self.arch_sandwich = arch_sandwich
        self.gumbel_tau = float(gumbel_tau)
        self.sample_seed = int(sample_seed)
        self.lasts = None if lasts is None else tuple(lasts)
        self.target_latency_ms = float(target_latency_ms)
        if ohem_thresh is not None and not 0 < ohem_thresh <= 1:
            raise ConfigError(f"FasterSegSpace: ohem_thresh must be in (0, 1], got {ohem_thresh!r}")
        self.ohem_thresh = ohem_thresh
        weights = tuple(float(w) for w in latency_scale_weights)
        if len(weights) != 3 or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(
                "FasterSegSpace: latency_scale_weights must be three weights >= 0 (1/8, 1/16, "
                f"1/32) with a positive sum, got {latency_scale_weights!r}"
            )
        self.latency_scale_weights = weights
        if latency_recursion not in ("release", "exact"):
            raise ConfigError(
                "FasterSegSpace: latency_recursion must be 'release' or 'exact', got "
                f"{latency_recursion!r}"
            )
        self.latency_recursion = latency_recursion
        self.shared_bn_affine = bool(shared_bn_affine)
        self._phase = "weight"
        self._teacher_cache: tuple[torch.Tensor, torch.Tensor] | None = None  # (images, logits)
        self.last_sample: list[list[int]] | None = None  # width indices of the last sample

        self.stems = nn.ModuleDict(
            {
                s: make_fasterseg_stem(3, stem_channels(Fch, self.stem_head[s][0] / 12))
                for s in self.sets
            }
        )
        self.cells = nn.ModuleDict()
        for li in range(layers):
            for j in range(min(li, 2) + 1):
                cell = nn.ModuleDict()
                ins = self._in_choices(li, j)
                cell["keep"] = _MixedOp(ins, self._node_choices(li, j), 1, shared_bn_affine)
                if j < 2 and li < layers - 1:
                    cell["down"] = _MixedOp(ins, self._node_choices(li, j + 1), 2, shared_bn_affine)
                self.cells[f"{li}_{j}"] = cell
        self.heads = nn.ModuleDict(
            {s: _SearchHeads(num_classes, Fch, self.stem_head[s][1] / 12) for s in self.sets}
        )
        for s in self.sets:
            for j in range(3):
                self._arch(f"alpha_{s}_{j}", (layers - j, len(FASTERSEG_PRIMITIVES)), arch_init)
            for j in (1, 2):
                self._arch(f"beta_{s}_{j}", (layers - j - 1, 2), arch_init)
        if len(self.widths) > 1:
            for j in range(3):
                self._arch(f"ratio_student_{j}", (layers - max(j, 1), len(self.widths)), arch_init)
        self.register_buffer("sample_step", torch.zeros((), dtype=torch.long))
        # per pair (2, 0), (2, 1): validation mIoU and table latency (ms), 0 = not recorded
        self.register_buffer("branch_miou", torch.zeros(2, dtype=torch.float64))
        self.register_buffer("branch_latency", torch.zeros(2, dtype=torch.float64))

    # ----------------------------------------------------------------- structure
    def _arch(self, name: str, shape: tuple[int, int], value: float) -> None:
        setattr(self, name, nn.Parameter(torch.full(shape, float(value))))

    def _channels(self, j: int, twelfths: int) -> int:
        return num_filters(SCALES[j], self.Fch, twelfths / 12)

    def _node_choices(self, li: int, j: int) -> list[int]:
        """Channel counts node ``(li, j)`` (output of layer ``li`` at scale ``j``) can have."""
        if li == self.layers - 1:
            twelfths = [self.stem_head[s][1] for s in self.sets]
        else:
            twelfths = list(self.widths) + [max(self.widths)]
        return sorted({self._channels(j, t) for t in twelfths})

    def _in_choices(self, li: int, j: int) -> list[int]:
        if li == 0:
            return sorted({self._channels(0, self.stem_head[s][0]) for s in self.sets})
        return self._node_choices(li - 1, j)

    def _ratio_row(self, li: int, j: int) -> tuple[str, int]:
        """Which width-logit row decides node ``(li, j)``: ``(name, row)``."""
        return f"ratio_student_{j}", (li - 1 if j == 2 else li)

    # ----------------------------------------------------------------- protocol
    def arch_parameters(self) -> dict[str, nn.Parameter]:
        """α ``alpha_<set>_<scale>``, β ``beta_<set>_<scale>``, γ ``ratio_student_<scale>``."""
        return {
            name: p
            for name, p in self.named_parameters(recurse=False)
            if name.split("_")[0] in ("alpha", "beta", "ratio")
        }

    def arch_labels(self) -> dict[str, tuple[list[str], list[str]]]:
        """Rows: the layer of each cell (α, β) or node (γ); columns: ops, inputs, widths."""
        labels = {}
        for name, p in self.arch_parameters().items():
            kind, j = name.split("_")[0], int(name[-1])
            first = {"alpha": j, "beta": j + 1, "ratio": 1 if j == 2 else 0}[kind]
            cols = {
                "alpha": list(FASTERSEG_PRIMITIVES),
                "beta": ["from down", "keep"],
                "ratio": [f"{w}/12" for w in self.widths],
            }[kind]
            labels[name] = ([f"layer {first + r}" for r in range(p.shape[0])], cols)
        return labels

    def set_phase(self, phase: str) -> None:
        """``"weight"``: sandwich passes; ``"arch"``: also, unless ``arch_sandwich`` is off."""
        if phase not in ("weight", "arch"):
            raise ValueError(f"phase must be 'weight' or 'arch', got {phase!r}")
        self._phase = phase

    # ----------------------------------------------------------------- sampling
    def _generator(self) -> torch.Generator:
        step = int(self.sample_step)
        self.sample_step += 1
        return torch.Generator().manual_seed(self.sample_seed * 1_000_003 + step)

    def _width_plan(self, arch_set: str, mode: str) -> dict[int, tuple[torch.Tensor, Any]]:
        """Per scale: chosen width index per row and the score (``None``: no score)."""
        n = len(self.widths)
        plan: dict[int, tuple[torch.Tensor, Any]] = {}
        gen = self._generator() if mode in ("gumbel", "random") else None
        for j in range(3):
            rows = self.layers - max(j, 1)
            if arch_set == "teacher" or mode == "max" or n == 1:
                plan[j] = (torch.full((rows,), n - 1, dtype=torch.long), None)
            elif mode == "min":
                plan[j] = (torch.zeros(rows, dtype=torch.long), None)
            elif mode == "argmax":
                plan[j] = (getattr(self, f"ratio_student_{j}").detach().argmax(-1).cpu(), None)
            elif mode == "random":
                plan[j] = (torch.randint(n, (rows,), generator=gen), None)
            else:  # gumbel: hard sample, straight-through score
                logits = getattr(self, f"ratio_student_{j}")
                u = torch.rand(logits.shape, generator=gen, dtype=torch.float64)
                noise = -torch.log(-torch.log(u.clamp_min(1e-20))).to(logits)
                soft = F.softmax((F.log_softmax(logits, -1) + noise) / self.gumbel_tau, dim=-1)
                index = soft.detach().argmax(-1)
                hard = F.one_hot(index, n).to(soft)
                scores = (hard - soft.detach() + soft).gather(1, index[:, None])[:, 0]
                plan[j] = (index.cpu(), scores)
        if mode == "gumbel":
            self.last_sample = [plan[j][0].tolist() for j in range(3)]
        return plan

    def _node(
        self, li: int, j: int, arch_set: str, plan: Mapping[int, tuple[torch.Tensor, Any]]
    ) -> tuple[int, Any]:
        """Channels and score of node ``(li, j)``; ``li == -1`` is the stem output."""
        if li == -1:
            return self._channels(0, self.stem_head[arch_set][0]), None
        if li == self.layers - 1:
            return self._channels(j, self.stem_head[arch_set][1]), None
        _, row = self._ratio_row(li, j)
        index, scores = plan[j]
        c = self._channels(j, self.widths[int(index[row])])
        return c, None if scores is None else scores[row]

    # ----------------------------------------------------------------- forward
    def _run(
        self, x: torch.Tensor, arch_set: str, plan: Mapping[int, tuple[torch.Tensor, Any]]
    ) -> dict[str, torch.Tensor]:
        alphas = [F.softmax(getattr(self, f"alpha_{arch_set}_{j}"), -1) for j in range(3)]
        betas = {j: F.softmax(getattr(self, f"beta_{arch_set}_{j}"), -1) for j in (1, 2)}

        def cell(li: int, j: int, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            _, s_in = self._node(li - 1, j, arch_set, plan)
            ops = self.cells[f"{li}_{j}"]
            c_out, s_out = self._node(li, j, arch_set, plan)
            keep = ops["keep"](inp, alphas[j][li - j], c_out, _mul(s_in, s_out))
            if "down" not in ops:
                return keep, None
            c_out, s_out = self._node(li, j + 1, arch_set, plan)
            return keep, ops["down"](inp, alphas[j][li - j], c_out, _mul(s_in, s_out))

        outputs = self._lattice(self.stems[arch_set](x), betas, cell)
        return self.heads[arch_set](*outputs)

    def _lattice(self, start: Any, betas: Mapping[int, torch.Tensor], cell: Any) -> list[Any]:
        """Walk the L × 3 lattice; return the last layer's three same-scale outputs.

        ``cell(l, j, input) -> (keep, down or None)``; the input of cell ``(l, j)`` is ``start``
        (l = 0), the previous same-scale output (1/8), the finer cell's down output (the first
        cell of a scale); a cell with both runs on each and its outputs are mixed,
        ``β0 · cell(down) + β1 · cell(keep)``, as the release's ``Network_Multi_Path`` does. Used
        for features (the forward) and for cumulative latencies alike: for latencies
        (``before + op``, β summing to 1) it is the exact expected latency of the β-weighted
        paths (``latency_recursion: exact``), *not* the release's ``forward_latency``
        accumulation (``latency_recursion: release``,
        :meth:`~lightning_nas.methods.fasterseg.latency.FasterSegLatency._release_paths`).
        """
        keep: dict[tuple[int, int], Any] = {}
        down: dict[tuple[int, int], Any] = {}
        for li in range(self.layers):
            for j in range(min(li, 2) + 1):
                if li == 0:
                    inp = start
                elif j == 0:
                    inp = keep[(li - 1, 0)]
                elif li == j:
                    inp = down[(li - 1, j - 1)]
                else:  # the cell runs on both inputs and β mixes its outputs (the release)
                    b = betas[j][li - j - 1]
                    k0, d0 = cell(li, j, down[(li - 1, j - 1)])
                    k1, d1 = cell(li, j, keep[(li - 1, j)])
                    keep[(li, j)] = b[0] * k0 + b[1] * k1
                    if d0 is not None:
                        down[(li, j)] = b[0] * d0 + b[1] * d1
                    continue
                keep[(li, j)], out = cell(li, j, inp)
                if out is not None:
                    down[(li, j)] = out
            for key in [k for k in keep if k[0] == li - 1]:
                keep.pop(key)
                down.pop(key, None)
        return [keep[(self.layers - 1, j)] for j in range(3)]

    def _main_head(self) -> str:
        return _PAIR_HEAD[self.selected_lasts()]

    def forward(self, x: torch.Tensor) -> Any:
        """The student's logits (eval) or every pass of the step (training).

        Eval: logits at the input size, widths = argmax γ, the selected pair's fused head.
        Training: a :class:`FasterSegOutput`.
        """
        head = self._main_head()
        if not self.training:
            preds = self._run(x, "student", self._width_plan("student", "argmax"))
            return F.interpolate(
                preds[head], size=x.shape[-2:], mode="bilinear", align_corners=True
            )
        passes: list[tuple[str, dict[str, torch.Tensor]]] = []
        teacher = None
        if "teacher" in self.sets:
            preds = self._run(x, "teacher", self._width_plan("teacher", "max"))
            passes.append(("teacher", preds))
            teacher = preds[head].detach()
        sampled = self._run(x, "student", self._width_plan("student", "gumbel"))
        passes.append(("student/sampled", sampled))
        extra = self.sandwich and (self._phase == "weight" or self.arch_sandwich)
        if extra and len(self.widths) > 1:
            for mode in ("max", "min"):
                passes.append(
                    (f"student/{mode}", self._run(x, "student", self._width_plan("student", mode)))
                )
        out = FasterSegOutput(passes=passes, student=sampled[head], teacher=teacher)
        self._teacher_cache = None if teacher is None else (x, teacher)
        return out

    def search_loss(self, output: Any, mask: torch.Tensor, ignore_index: int) -> torch.Tensor:
        """Σ over passes and heads of pixel-wise CE (OHEM CE with ``ohem_thresh``).

        Labels are nearest-resized to the heads' 1/8 resolution, as the release down-samples them.
        """
        if not isinstance(output, FasterSegOutput):
            return super().search_loss(output, mask, ignore_index)
        size = output.student.shape[-2:]
        target = mask.long()
        if target.shape[-2:] != size:
            target = F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].long()
        if self.ohem_thresh is None:
            criterion = partial(F.cross_entropy, ignore_index=ignore_index)
        else:
            criterion = OhemCrossEntropy(self.ohem_thresh, 1 / 16, ignore_index)
        total = output.student.new_zeros(())
        for _, preds in output.passes:
            for logits in preds.values():
                total = total + criterion(logits, target)
        return total

    def pair_logits(self, x: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """The student's logits of both branch pairs at the input size (argmax widths).

        For the release's branch selection (``callbacks.BranchSelection``).
        """
        preds = self._run(x, "student", self._width_plan("student", "argmax"))
        return {
            pair: F.interpolate(preds[head], size=x.shape[-2:], mode="bilinear", align_corners=True)
            for pair, head in _PAIR_HEAD.items()
        }

    def output_logits(self, output: Any) -> torch.Tensor:
        """The student's sampled-pass logits of the selected pair's head (1/8 resolution)."""
        return output.student if isinstance(output, FasterSegOutput) else output

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits on ``x`` (same head as the student's), detached.

        Taken from the step's forward when ``x`` is the input it ran on, else computed.
        """
        if "teacher" not in self.sets:
            raise ConfigError("FasterSegSpace: teacher_logits needs teacher: true (co-search)")
        cache = self._teacher_cache
        if cache is not None and cache[0] is x:
            return cache[1]
        with torch.no_grad():
            preds = self._run(x, "teacher", self._width_plan("teacher", "max"))
        return preds[self._main_head()].detach()

    # ----------------------------------------------------------------- derivation
    def _tensors(self, arch_set: str) -> tuple[list, list, list, list[int]]:
        alphas = [getattr(self, f"alpha_{arch_set}_{j}").detach().cpu() for j in range(3)]
        betas = [getattr(self, f"beta_{arch_set}_{j}").detach().cpu() for j in (1, 2)]
        if arch_set == "student" and len(self.widths) > 1:
            ratios = [getattr(self, f"ratio_student_{j}").detach().cpu() for j in range(3)]
            return alphas, betas, ratios, list(self.widths)
        ratios = [torch.zeros(self.layers - max(j, 1), 1) for j in range(3)]
        return alphas, betas, ratios, [max(self.widths)]  # the teacher: always the widest

    def record_branch_scores(
        self, miou: Mapping[tuple[int, int], float], latency_ms: Mapping[tuple[int, int], float]
    ) -> None:
        """Record per-pair mIoU and latency; :meth:`derive` then selects the pair as the release."""
        for k, pair in enumerate(BRANCH_PAIRS):
            self.branch_miou[k] = float(miou[pair])
            self.branch_latency[k] = float(latency_ms[pair])

    def selected_lasts(self) -> tuple[int, int]:
        """The student's final branch pair (see ``lasts``)."""
        if self.lasts is not None:
            return self.lasts
        if float(self.branch_latency.min()) > 0:
            m, t = self.branch_miou.tolist(), self.branch_latency.tolist()
            return select_lasts(m[0], m[1], t[0], t[1], self.target_latency_ms)
        return (2, 1)

    def derive(self) -> FasterSegGenotype:
        """The student network the current α, β, γ encode (release derivation)."""
        return self._derive("student")

    def extra_genotypes(self) -> dict[str, FasterSegGenotype]:
        """The teacher (no skips, full width), with the student's branch pair."""
        return {"teacher": self._derive("teacher")} if "teacher" in self.sets else {}

    def derive_pair(self, lasts: tuple[int, int]) -> FasterSegGenotype:
        """The student derived with the branch pair ``lasts`` (``(2, 1)`` or ``(2, 0)``)."""
        return self._derive("student", tuple(lasts))

    def derive_candidates(self) -> dict[str, FasterSegGenotype]:
        """The student with each branch pair, by ``"<a>-<b>"``.

        ``LatencyRegularization`` adapts λ when either pair leaves the FPS window, as the
        release does.
        """
        return {f"{a}-{b}": self.derive_pair((a, b)) for a, b in BRANCH_PAIRS}

    def _derive(self, arch_set: str, lasts: tuple[int, int] | None = None) -> FasterSegGenotype:
        alphas, betas, ratios, choices = self._tensors(arch_set)
        return derive_genotype(
            alphas, betas, ratios, choices, lasts or self.selected_lasts(),
            ignore_skip=arch_set == "teacher", stem_head_width=self.stem_head[arch_set],
        )  # fmt: skip

    def derived_statistics(self) -> dict[str, float]:
        g = self.derive()
        return {
            "student_cells": float(sum(len(o) for o in g.ops)),
            "student_skips": float(sum(o.count("skip") for o in g.ops)),
        }

    def load_released(self, source: str | Path | Mapping[str, Any]) -> None:
        """Copy the release's architecture tensors into α, β, γ (and the branch scores).

        Args:
            source: The JSON ``experiments/genotypes/fasterseg_released_arch_params.json`` (keys
                ``arch_0`` = teacher, ``arch_1`` = student), a mapping like it, or one
                release ``arch_<i>.pt`` file.

        Raises:
            ConfigError: If a tensor is missing or its shape does not fit this space.
        """
        sets = load_released_arch(source)
        where = str(source) if not isinstance(source, Mapping) else "<mapping>"
        with torch.no_grad():
            for arch_set, tensors in sets.items():
                if arch_set not in self.sets:
                    continue
                for name, value in tensors.items():
                    if name.startswith("ratio") and (
                        arch_set == "teacher" or len(self.widths) == 1
                    ):
                        continue
                    target = getattr(self, f"{name.split('_')[0]}_{arch_set}_{name[-1]}", None)
                    if target is None or tuple(target.shape) != tuple(value.shape):
                        raise ConfigError(
                            f"{where}: {arch_set} tensor {name} has shape {tuple(value.shape)}; "
                            f"this space expects {None if target is None else tuple(target.shape)} "
                            f"(layers={self.layers}, widths={list(self.widths)})"
                        )
                    target.copy_(value.to(target))
        scores = sets.get("scores")
        if scores:
            self.record_branch_scores(scores["miou"], scores["latency"])


def _mul(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return a if b is None else a * b
