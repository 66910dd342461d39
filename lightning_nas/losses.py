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
    probability, so that the ``min_kept`` hardest pixels count. ``min_kept`` is
    ``min_kept_fraction`` of the valid pixels of the batch (FasterSeg:
    ``batch·H·W // 16`` → 1/16). When no pixel is hard and ``min_kept`` rounds to 0 (tiny or
    mostly ignored batches), it is the plain cross-entropy of the valid pixels (as BiSeNet's
    OHEM does when ``min_kept`` exceeds the valid pixels), never NaN.

    Args:
        thresh: Probability threshold (FasterSeg: 0.7).
        min_kept_fraction: Fraction of the valid pixels always kept (FasterSeg: 1/16).
        ignore_index: Label value ignored.

    Example:
        >>> loss = OhemCrossEntropy(thresh=0.7, min_kept_fraction=0.25)
        >>> logits = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.0]]]])   # (1, 2, 1, 2)
        >>> mask = torch.tensor([[[0, 0]]])                          # easy pixel, hard pixel
        >>> round(float(loss(logits, mask)), 4)                      # only the hard one: log 2
        0.6931
    """

    def __init__(
        self, thresh: float = 0.7, min_kept_fraction: float = 1 / 16, ignore_index: int = 255
    ) -> None:
        super().__init__()
        if not 0 < thresh <= 1:
            raise ConfigError(f"OhemCrossEntropy: thresh must be in (0, 1], got {thresh!r}")
        if not 0 <= min_kept_fraction <= 1:
            raise ConfigError(
                f"OhemCrossEntropy: min_kept_fraction must be in [0, 1], got {min_kept_fraction!r}"
            )
        self.thresh = float(thresh)
        self.min_kept_fraction = float(min_kept_fraction)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean CE over the kept pixels; ``logits`` ``(N, K, H, W)``, ``mask`` ``(N, H, W)``."""
        mask = mask.long()
        pixel_loss = F.cross_entropy(logits, mask, ignore_index=self.ignore_index, reduction="none")
        valid = mask != self.ignore_index
        count = int(valid.sum())
        if count == 0:
            return logits.sum() * 0.0
        with torch.no_grad():
            prob = torch.exp(-pixel_loss[valid])  # probability of the true class
            threshold = self.thresh
            min_kept = min(count, int(count * self.min_kept_fraction))
            if min_kept > 0:
                kth = torch.kthvalue(prob, min_kept).values.item()
                threshold = max(threshold, kth)
            keep = prob <= threshold
        if not bool(keep.any()):  # every pixel easy and min_kept 0: plain CE over the valid ones
            return pixel_loss[valid].mean()
        return pixel_loss[valid][keep].mean()
