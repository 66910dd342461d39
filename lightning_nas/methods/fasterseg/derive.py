"""FasterSeg derivation: architecture tensors → branches (ops, path, widths), as the release does.

Pure functions of the architecture tensors (no modules), following the official release's
``train/model_seg.py`` (``network_metas``: ``betas2path``, ``path2widths``,
``alphas2ops_path_width``) as ``../shared/reference.md`` §3.3 describes it:

* **Path** (softmax β): the branch ending at 1/16 goes down at ``argmax β1[1:-1][:, 0] + 1``; the
  branch ending at 1/32 goes down at ``i + 1`` and ``j + 2`` for the pair maximising
  ``β1[i][0] · β2[j][0]`` over ``j < L - 4``, ``1 <= i < j - 1``. (β1 row ``r`` belongs to the
  1/16 cell of layer ``r + 2``, so the 1/16 rule is one layer earlier than the 1/32 rule's first
  down; this is the release's behaviour and reproducing it is what gives the published network.)
* **Widths**: argmax of the width logits of each node along the path.
* **Ops**: argmax of α along the path; a ``skip`` on a non-downsampling cell is removed (the path
  is compacted) — at most ``len(path) - (round(len(path) / 3) + 2 · last)`` of them, those with
  the largest skip probability; between two downsamplings (and from the last one to the end) not
  every cell may be a skip (the least likely one is kept with its next-best op); every other
  ``skip`` is replaced by the next-best op. The teacher ignores skips altogether.
* Each branch is derived from the tensors as given. (The release's ``network_metas`` writes
  ``-inf`` into α and re-normalises β in place, so a branch derived after another can see
  those edits; on the released tensors both give the published network.)

Node indexing (the release's tensors): α at scale ``s`` has one row per layer from layer ``s``
on (``alpha_s[l - s]``); β at scale ``s ∈ {1, 2}`` one row per cell with two inputs
(``beta_s[l - s - 1]``, column 0 = from the downsampling path); width logits one row per node
output that is not the network output: ``ratio_0[l]``, ``ratio_1[l]``, ``ratio_2[l - 1]`` for the
output of layer ``l``.

Example:
    >>> import torch
    >>> b1, b2 = torch.full((14, 2), 0.5), torch.full((13, 2), 0.5)
    >>> b1[6, 0] = 0.9                       # the 1/16 cell of layer 8 prefers the down input
    >>> betas_to_path(b1, b2, last=1, layers=16)
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_nas.methods.fasterseg.genotype import FasterSegGenotype

__all__ = [
    "derive_genotype",
    "DerivedBranch",
    "betas_to_path",
    "branch_objective",
    "derive_branch",
    "path_widths",
    "prune_skips",
    "select_lasts",
]

PRIMITIVES = ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")
_SKIP = 0


@dataclass(frozen=True)
class DerivedBranch:
    """One derived branch: an op per cell, the scale each cell runs at, the widths between.

    ``widths[l]`` is the output width of cell ``l`` (the last cell's output has the head width).
    """

    ops: tuple[str, ...]
    path: tuple[int, ...]
    widths: tuple[float, ...]

    @property
    def last(self) -> int:
        """The scale the branch ends at (0 = 1/8, 1 = 1/16, 2 = 1/32)."""
        return self.path[-1]


def _row(alphas: Sequence[torch.Tensor], scale: int, layer: int) -> torch.Tensor:
    return alphas[scale][layer - scale]


def betas_to_path(beta1: torch.Tensor, beta2: torch.Tensor, last: int, layers: int) -> list[int]:
    """The scale of each of the ``layers`` cells of the branch ending at ``last``.

    Args:
        beta1: Softmax-normalised β of the 1/16 cells, ``(layers - 2, 2)``.
        beta2: Softmax-normalised β of the 1/32 cells, ``(layers - 3, 2)``.
        last: 0, 1 or 2.
        layers: Number of layers L.

    Raises:
        ValueError: On a bad ``last`` or a network too shallow for a branch ending at 1/32.
    """
    if last not in (0, 1, 2):
        raise ValueError(f"last must be 0, 1 or 2, got {last!r}")
    downs = [0] * layers
    if last == 1:
        column = beta1[1:-1, 0]
        downs[int(torch.argmax(column)) + 1] = 1
    elif last == 2:
        best, best_ij = -1.0, None
        for j in range(layers - 4):
            for i in range(1, j - 1):
                prob = float(beta1[i, 0] * beta2[j, 0])
                if prob > best:
                    best, best_ij = prob, (i, j)
        if best_ij is None:
            raise ValueError(f"a branch ending at 1/32 needs at least 8 layers, got {layers}")
        downs[best_ij[0] + 1] = 1
        downs[best_ij[1] + 2] = 1
    path = [0]
    for down in downs[:-1]:
        path.append(path[-1] + down)
    return path


def path_widths(
    path: Sequence[int], ratios: Sequence[torch.Tensor], width_choices: Sequence[float]
) -> list[float]:
    """The width of each cell output along ``path`` but the last: argmax of its width logits."""
    widths = []
    for layer in range(1, len(path)):
        scale = path[layer]
        row = ratios[scale][layer - 1] if scale == 0 else ratios[scale][layer - scale]
        widths.append(float(width_choices[int(torch.argmax(row))]))
    return widths


def prune_skips(
    alphas: Sequence[torch.Tensor],
    path: Sequence[int],
    widths: Sequence[float],
    ignore_skip: bool = False,
) -> DerivedBranch:
    """Ops along ``path`` with the release's skip pruning; see the module docstring.

    Args:
        alphas: α logits per scale (not modified).
        path: The scale of each cell (uncompacted, one per layer).
        widths: The output width of each cell but the last.
        ignore_skip: Replace every skip by the next-best op (the teacher).
    """
    n = len(path)
    if len(widths) != n - 1:
        raise ValueError(f"{len(widths)} widths for a path of {n} cells; expected {n - 1}")
    scores = [F.softmax(_row(alphas, path[i], i).detach().double(), dim=-1) for i in range(n)]
    banned = [set() for _ in range(n)]  # ops excluded per cell
    if ignore_skip:
        for b in banned:
            b.add(_SKIP)

    def op_of(i: int) -> int:
        order = torch.argsort(scores[i], descending=True, stable=True).tolist()
        return next(o for o in order if o not in banned[i])

    def is_down(i: int) -> bool:
        return i < n - 1 and path[i + 1] > path[i]

    candidates = [i for i in range(n) if op_of(i) == _SKIP and not is_down(i)]
    downs = [i for i in range(n) if is_down(i)]
    forced = set()  # all-skip segments: their least likely skip takes its next-best op
    if downs:
        bounds = [*downs, n]
        for first, second in zip(bounds, bounds[1:]):
            inner = list(range(first + 1, second))
            if inner and all(i in candidates for i in inner):
                weakest = min(reversed(inner), key=lambda i: float(scores[i][_SKIP]))
                banned[weakest].add(_SKIP)
                forced.add(weakest)
    min_len = round(n / 3) + 2 * path[-1]
    removable = max(0, n - min_len)
    if len(candidates) > removable:
        # as the release, a forced cell still takes part in this ranking (it is never removed)
        ranked = sorted(candidates, key=lambda i: float(scores[i][_SKIP]), reverse=True)
        candidates = sorted(ranked[:removable])
    removed = set(candidates) - forced
    kept = [i for i in range(n) if i not in removed]
    for i in kept:  # a kept skip (over the cap, or downsampling) takes its next-best op
        banned[i].add(_SKIP)
    ops = tuple(PRIMITIVES[op_of(i)] for i in kept)
    return DerivedBranch(
        ops=ops,
        path=tuple(path[i] for i in kept),
        widths=tuple(widths[i] for i in kept[:-1]),
    )


def derive_branch(
    alphas: Sequence[torch.Tensor],
    betas: Sequence[torch.Tensor],
    ratios: Sequence[torch.Tensor],
    width_choices: Sequence[float],
    last: int,
    ignore_skip: bool = False,
) -> DerivedBranch:
    """Derive the branch ending at ``last`` from raw (unnormalised) architecture tensors.

    Args:
        alphas: α logits of the three scales, ``(L, P)``, ``(L - 1, P)``, ``(L - 2, P)``.
        betas: β logits of 1/16 and 1/32, ``(L - 2, 2)`` and ``(L - 3, 2)``.
        ratios: Width logits of the three scales, ``(L - 1, W)``, ``(L - 1, W)``,
            ``(L - 2, W)`` (``W = 1`` for a fixed width).
        width_choices: The width multiplier of each column of ``ratios``.
        last: The scale the branch ends at.
        ignore_skip: The teacher's rule (no skip at all).
    """
    layers = alphas[0].shape[0]
    beta1 = F.softmax(betas[0].detach().double(), dim=-1)
    beta2 = F.softmax(betas[1].detach().double(), dim=-1)
    path = betas_to_path(beta1, beta2, last, layers)
    widths = path_widths(path, [r.detach() for r in ratios], width_choices)
    return prune_skips(alphas, path, widths, ignore_skip=ignore_skip)


def branch_objective(miou: float, latency_ms: float, target_ms: float = 8.3) -> float:
    """FasterSeg's selection objective ``mIoU · (latency / target)^-0.07``.

    Example:
        >>> round(branch_objective(0.7, 8.3), 6)
        0.7
    """
    return miou * (latency_ms / target_ms) ** -0.07


def select_lasts(
    miou02: float, miou12: float, latency02: float, latency12: float, target_ms: float = 8.3
) -> tuple[int, int]:
    """The release's branch pair: ``(2, 0)`` if its objective beats ``(2, 1)``'s, else ``(2, 1)``.

    Example (the released student's stored numbers):
        >>> select_lasts(0.0275, 0.0623, 6.260, 6.414)
        (2, 1)
    """
    obj02 = branch_objective(miou02, latency02, target_ms)
    obj12 = branch_objective(miou12, latency12, target_ms)
    return (2, 0) if obj02 > obj12 else (2, 1)


def derive_genotype(
    alphas: Sequence[torch.Tensor],
    betas: Sequence[torch.Tensor],
    ratios: Sequence[torch.Tensor],
    width_choices: Sequence[int],
    lasts: Sequence[int],
    ignore_skip: bool = False,
    stem_head_width: tuple[int, int] = (12, 12),
) -> FasterSegGenotype:
    """The genotype of branches ending at ``lasts`` (release derivation, widths in twelfths)."""
    branches = [
        derive_branch(alphas, betas, ratios, width_choices, last, ignore_skip) for last in lasts
    ]
    return FasterSegGenotype(
        ops=tuple(b.ops for b in branches),
        paths=tuple(b.path for b in branches),
        widths=tuple(tuple(int(w) for w in b.widths) for b in branches),
        stem_head_width=tuple(stem_head_width),
    )
