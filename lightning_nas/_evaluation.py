"""Validation / test / predict steps shared by the search and segmentation modules (internal)."""

from __future__ import annotations

from typing import Any

import torch


class SegmentationEvalMixin:
    """``validation_step``, ``test_step`` and ``predict_step`` of a segmentation LightningModule.

    The module provides ``forward`` (logits at the input size), ``loss(logits, mask)`` and the
    metrics ``val_miou`` / ``test_miou``; it logs ``<stage>/loss`` and ``<stage>/mIoU``.
    """

    def eval_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits used for validation, test and predict (override for whole-image inference)."""
        return self(image)

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self.eval_logits(batch["image"])
        loss = self.loss(logits, batch["mask"])
        metric = self.val_miou if stage == "val" else self.test_miou
        metric.update(logits.argmax(1), batch["mask"].long())
        bs = batch["image"].shape[0]
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=bs)
        self.log(f"{stage}/mIoU", metric, prog_bar=True, batch_size=bs)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.eval_logits(batch["image"]).argmax(1)
