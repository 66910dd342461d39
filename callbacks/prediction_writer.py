"""PredictionWriter: write ``predict`` outputs in each benchmark's submission format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from typing_extensions import override

from lightning_nas.data.palette import bitwise_palette, colorize, overlay
from lightning_nas.errors import ConfigError

__all__ = ["PredictionWriter"]


class PredictionWriter(BasePredictionWriter):
    """Write each predicted label map as the benchmark's submission file, plus an overlay.

    For every image of ``trainer.predict(..., datamodule=dm)``:

    * ``<output_dir>/submission/<dm.submission_dir>/<dm.submission_name(name)>``: the
      prediction at the image's size on disk (``batch["size"]``; nearest-neighbour resize when
      the network saw a resized image), encoded by ``dm.encode_submission``: Cityscapes
      label-id PNGs ``<city>_<seq>_<frame>_pred.png`` (point ``CITYSCAPES_RESULTS`` at
      ``submission/``), VOC palette PNGs under ``results/VOC2012/Segmentation/comp6_test_cls/``,
      ADE20K PNGs with values 1..150. Nothing else is written under ``submission/``, so it can be
      zipped or evaluated as it is.
    * ``<output_dir>/overlay/<name>.png`` (with ``overlay=True``): the input image with the
      prediction's class colours (``dm.palette``) blended over it, for people to look at.

    ``prediction`` is what ``predict_step`` returns: predicted train ids ``(N, H, W)``
    (``SegmentationModule`` / ``SearchModule`` return ``logits.argmax(1)``), or logits
    ``(N, C, H, W)``, of which the argmax is taken. The batch must carry ``"name"`` (and
    ``"size"`` for the resize), as the predict loaders of
    :class:`~lightning_nas.data.SegmentationDataModule` provide. Under DDP each rank writes
    the images of its own shard.

    Args:
        output_dir: Folder receiving ``submission/`` and ``overlay/``.
        overlay: Also write the colourised overlays.
        alpha: Weight of the class colours in the overlays, in [0, 1].

    Raises:
        ValueError: If ``alpha`` is outside [0, 1].

    Example:
        >>> writer = PredictionWriter(output_dir="runs/predictions", alpha=0.6)
        >>> writer.submission_root, writer.overlay_root
        (PosixPath('runs/predictions/submission'), PosixPath('runs/predictions/overlay'))
    """

    def __init__(self, output_dir: str = "predictions", overlay: bool = True, alpha: float = 0.5):
        super().__init__("batch")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        self.output_dir = Path(output_dir)
        self.overlay = overlay
        self.alpha = alpha

    @property
    def submission_root(self) -> Path:
        """Folder of the submission files."""
        return self.output_dir / "submission"

    @property
    def overlay_root(self) -> Path:
        """Folder of the overlays."""
        return self.output_dir / "overlay"

    @override
    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "encode_submission"):
            raise ConfigError(
                "PredictionWriter needs a lightning_nas SegmentationDataModule "
                "(trainer.predict(model, datamodule=...)) to know the submission format"
            )
        if not isinstance(prediction, torch.Tensor):
            raise ConfigError(
                f"predict_step must return a tensor of train ids or logits, got {type(prediction)}"
            )
        labels = prediction.argmax(1) if prediction.ndim == 4 else prediction
        labels = labels.detach().to("cpu", torch.int64).clamp(0, 255).to(torch.uint8).numpy()
        sizes = batch.get("size")
        folder = self.submission_root / dm.submission_dir
        folder.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(batch["name"]):
            label = labels[i]
            if sizes is not None:
                height, width = (int(v) for v in sizes[i])
                if label.shape != (height, width):
                    label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
            self._write_submission(dm, folder / dm.submission_name(name), label)
            if self.overlay:
                self._write_overlay(dm, name, batch["image"][i], labels[i])

    def _write_submission(self, dm: Any, path: Path, label: np.ndarray) -> None:
        values = np.ascontiguousarray(dm.encode_submission(label), dtype=np.uint8)
        if dm.submission_palette:
            table = list(bitwise_palette(256))
            table[: len(dm.palette)] = dm.palette
            image = Image.fromarray(values)
            image.putpalette([c for colour in table for c in colour])
            image.save(path)
        elif not cv2.imwrite(str(path), values):
            raise OSError(f"cannot write '{path}'")

    def _write_overlay(self, dm: Any, name: str, image: torch.Tensor, label: np.ndarray) -> None:
        mean = torch.tensor(dm.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(dm.std, dtype=torch.float32).view(-1, 1, 1)
        rgb = (image.detach().float().cpu() * std + mean).mul(255).clamp(0, 255)
        rgb = rgb.round().to(torch.uint8).permute(1, 2, 0).numpy()
        if label.shape != rgb.shape[:2]:
            label = cv2.resize(label, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        blended = overlay(rgb, colorize(label, dm.palette), self.alpha)
        self.overlay_root.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(self.overlay_root / f"{name}.png"), blended[..., ::-1])
