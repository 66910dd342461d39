"""ProxySegmentationModule: a SegmentationModule whose inputs are cached features."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from lightning_nas.errors import ConfigError
from lightning_nas.segmentation import SegmentationModule

__all__ = ["ProxySegmentationModule"]


class ProxySegmentationModule(SegmentationModule):
    """Train a head on cached features: logits resized to the *mask*, not the input.

    Same arguments, optimisation, loss, metrics and log keys as
    :class:`~lightning_nas.segmentation.SegmentationModule`; the batches of a
    :class:`~lightning_nas.proxy.datamodule.CachedFeatureDataModule` carry features
    ``(N, C, h, w)`` as ``"image"`` and masks ``(N, H, W)`` at the input size. During the
    training, validation and test steps the network's logits are resized bilinearly to the
    mask's size before the loss and the metric; :meth:`loss` also resizes logits of any other
    size (auxiliary outputs). Outside a step ``forward`` returns the logits at the size of the
    features. Sliding-window, multi-scale and flip evaluation (``eval_window``, ``eval_scales``,
    ``eval_flip``) act on images and are rejected.

    Example:
        >>> from torch import nn
        >>> module = ProxySegmentationModule(nn.Conv2d(320, 6, 1), num_classes=6)
        >>> features, mask = torch.zeros(2, 320, 4, 4), torch.zeros(2, 64, 64, dtype=torch.long)
        >>> tuple(module(features).shape)
        (2, 6, 4, 4)
        >>> with module.at_mask_size({"mask": mask}):
        ...     tuple(module(features).shape)
        (2, 6, 64, 64)
    """

    _mask_size: tuple[int, int] | None = None

    def setup(self, stage: str) -> None:
        """Reject the image-space evaluation options."""
        super().setup(stage)
        if self.eval_window is not None or self.eval_scales != (1.0,) or self.eval_flip:
            raise ConfigError(
                "ProxySegmentationModule: eval_window, eval_scales and eval_flip act on images, "
                "not on cached features; leave them at null / [1.0] / false"
            )

    @contextmanager
    def at_mask_size(self, batch: dict[str, Any]) -> Iterator[None]:
        """Within the block, ``forward`` gives logits at the size of ``batch["mask"]``."""
        previous, self._mask_size = self._mask_size, tuple(batch["mask"].shape[-2:])
        try:
            yield
        finally:
            self._mask_size = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the mask size inside a step (:meth:`at_mask_size`), else at the input's."""
        out = self.network(x)
        size = self._mask_size or tuple(x.shape[-2:])
        if tuple(out.shape[-2:]) != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The training loss of ``logits`` resized (bilinearly) to the mask."""
        if logits.shape[-2:] != mask.shape[-2:]:
            logits = F.interpolate(
                logits, size=mask.shape[-2:], mode="bilinear", align_corners=False
            )
        return super().loss(logits, mask)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        with self.at_mask_size(batch):
            return super().training_step(batch, batch_idx)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        with self.at_mask_size(batch):
            super().validation_step(batch, batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        with self.at_mask_size(batch):
            super().test_step(batch, batch_idx)
