"""Segmentation losses that smp does not provide.

:class:`OhemCrossEntropy` — online hard example mining cross-entropy, as FasterSeg (and BiSeNet,
whose code FasterSeg reuses) train with: only the pixels whose probability of the true class is
below ``thresh`` count, but never fewer than the ``min_kept`` hardest ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError

__all__ = ["OhemCrossEntropy"]


class OhemCrossEntropy(nn.Module):
    """Cross-entropy averaged over the hard pixels only.

    A pixel is hard if the predicted probability of its label is below ``thresh``. If fewer than
    ``min_kept`` pixels are hard, the threshold rises to the ``min_kept``-th smallest
    probability, so that the ``min_kept`` hardest pixels count (ties included). ``min_kept`` is
    ``int(min_kept_fraction · P)`` with ``P`` every pixel of the batch, ignored ones included
    (``count_ignored=True``, the release's ``ProbOhemCrossEntropy2d`` with ``min_kept =
    batch·H·W // (16·gt_down_sampling²)``, i.e. 1/16 of the label pixels the loss sees), or
    only the valid pixels (``count_ignored=False``). As in the release, nothing is mined when
    ``min_kept`` exceeds the valid pixels or is 0 (fewer than ``1 / min_kept_fraction``
    pixels, or ``min_kept_fraction=0``): it is the plain cross-entropy of the valid pixels. A
    batch without a valid pixel gives 0 (with a graph), where the release gives NaN.

    Args:
        thresh: Probability threshold (FasterSeg: 0.7).
        min_kept_fraction: Fraction of the pixels always kept (FasterSeg: 1/16).
        ignore_index: Label value ignored.
        count_ignored: ``min_kept`` counts every pixel, ignored ones included (the release);
            ``False``: only the valid ones.

    Example:
        >>> loss = OhemCrossEntropy(thresh=0.7, min_kept_fraction=0.5)  # min_kept = 1
        >>> logits = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.0]]]])   # (1, 2, 1, 2)
        >>> mask = torch.tensor([[[0, 0]]])                          # easy pixel, hard pixel
        >>> round(float(loss(logits, mask)), 4)                      # only the hard one: log 2
        0.6931
    """

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept_fraction: float = 1 / 16,
        ignore_index: int = 255,
        count_ignored: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < thresh <= 1:
            raise ConfigError(f"OhemCrossEntropy: thresh must be in (0, 1], got {thresh!r}")
        if not 0 <= min_kept_fraction <= 1:
            raise ConfigError(
                f"OhemCrossEntropy: min_kept_fraction must be in [0, 1], got {min_kept_fraction!r}"
            )
        if not isinstance(count_ignored, bool):
            raise ConfigError(
                f"OhemCrossEntropy: count_ignored must be true or false, got {count_ignored!r}"
            )
        self.thresh = float(thresh)
        self.min_kept_fraction = float(min_kept_fraction)
        self.ignore_index = ignore_index
        self.count_ignored = count_ignored

    def min_kept(self, mask: torch.Tensor) -> int:
        """The number of pixels always kept for the labels ``mask`` (before clamping)."""
        pixels = mask.numel() if self.count_ignored else int((mask != self.ignore_index).sum())
        return int(pixels * self.min_kept_fraction)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean CE over the kept pixels; ``logits`` ``(N, K, H, W)``, ``mask`` ``(N, H, W)``."""
        mask = mask.long()
        pixel_loss = F.cross_entropy(logits, mask, ignore_index=self.ignore_index, reduction="none")
        valid = mask != self.ignore_index
        count = int(valid.sum())
        if count == 0:
            return logits.sum() * 0.0
        min_kept = self.min_kept(mask)
        if min_kept == 0 or min_kept >= count:  # no mining, as the release
            return pixel_loss[valid].mean()
        with torch.no_grad():
            prob = torch.exp(-pixel_loss[valid])  # probability of the true class
            kth = torch.kthvalue(prob, min_kept).values.item()
            keep = prob <= max(self.thresh, kth)
        return pixel_loss[valid][keep].mean()
