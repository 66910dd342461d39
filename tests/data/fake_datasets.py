"""Tiny fake datasets written in each benchmark's real on-disk layout (never real data).

Each generator writes a few random images and labels whose raw values cover the dataset's
whole label range (and the values the mapping must ignore), and returns the root to pass as
``root``. Labels are blocky (random values on a coarse grid, upsampled) so that crops and
resizes keep several classes. Also used by ``benchmarks/data_pipeline.py`` at larger sizes.
:class:`OracleModel` and :func:`predict` drive ``trainer.predict`` with known predictions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from PIL import Image

from lightning_nas.data.palette import bitwise_palette

CITYSCAPES_CITIES = {
    "train": ("aachen", "bochum"),
    "val": ("frankfurt",),
    "test": ("berlin",),
    "train_extra": ("augsburg",),
}


def _blocky(rng: np.random.Generator, values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map of ``size`` made of 8x8-pixel blocks of values drawn from ``values``."""
    h, w = size
    grid = rng.choice(values, ((h + 7) // 8, (w + 7) // 8))
    return np.kron(grid, np.ones((8, 8), grid.dtype))[:h, :w].astype(values.dtype)


def _image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def make_cityscapes(
    root: str | Path,
    per_city: int = 2,
    size: tuple[int, int] = (64, 128),
    coarse: bool = False,
    seed: int = 0,
    ids: Sequence[int] = range(34),
) -> Path:
    """Cityscapes: ``leftImg8bit/`` + ``gtFine/`` (+ ``gtCoarse/``, ``train_extra``).

    Label ids are drawn from ``ids`` (default 0..33, every id of the official table); the
    ground-truth folders also hold the
    ``_color.png``, ``_instanceIds.png`` (uint16; equal to the label ids, no instances) and
    ``_polygons.json`` files the release ships, which must be ignored.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    values = np.asarray(list(ids), dtype=np.uint8)
    splits = ["train", "val", "test"] + (["train_extra"] if coarse else [])
    for split in splits:
        for city in CITYSCAPES_CITIES[split]:
            for i in range(per_city):
                stem = f"{city}_{i:06d}_{19 + i:06d}"
                image_dir = root / "leftImg8bit" / split / city
                image_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(image_dir / f"{stem}_leftImg8bit.png"), _image(rng, size))
                label = _blocky(rng, values, size)
                gts = []
                if split != "train_extra":
                    gts.append("gtFine")
                if coarse and split in ("train", "train_extra", "val"):
                    gts.append("gtCoarse")
                for gt in gts:
                    gt_dir = root / gt / split / city
                    gt_dir.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(gt_dir / f"{stem}_{gt}_labelIds.png"), label)
                    cv2.imwrite(
                        str(gt_dir / f"{stem}_{gt}_instanceIds.png"), label.astype(np.uint16)
                    )
                    cv2.imwrite(str(gt_dir / f"{stem}_{gt}_color.png"), _image(rng, size))
                    (gt_dir / f"{stem}_{gt}_polygons.json").write_text(json.dumps({}))
    return root


def make_voc(
    root: str | Path,
    num_train: int = 4,
    num_val: int = 2,
    num_test: int = 2,
    sbd_extra: int = 0,
    sizes: tuple[tuple[int, int], ...] = ((48, 64), (64, 48), (40, 56)),
    seed: int = 0,
) -> Path:
    """VOC 2012: ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}``.

    Labels are palette PNGs (VOC's colour map) with values 0..20 and a 255 border band around
    each block edge. With ``sbd_extra > 0`` also ``SegmentationClassAug/`` (grey PNGs, for the
    train images and ``sbd_extra`` more) and ``train_aug.txt`` (train + extra, never val).
    Image sizes cycle through ``sizes`` (VOC's images differ in size).
    """
    rng = np.random.default_rng(seed)
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassAug"):
        if folder != "SegmentationClassAug" or sbd_extra:
            (voc / folder).mkdir(parents=True, exist_ok=True)
    sets.mkdir(parents=True, exist_ok=True)
    palette = [c for colour in bitwise_palette(256) for c in colour]
    counts = {"train": num_train, "val": num_val, "test": num_test, "extra": sbd_extra}
    lists: dict[str, list[str]] = {}
    n = 0
    for split, count in counts.items():
        lists[split] = []
        for _ in range(count):
            stem = f"2008_{n:06d}"
            size = sizes[n % len(sizes)]
            n += 1
            lists[split].append(stem)
            cv2.imwrite(str(voc / "JPEGImages" / f"{stem}.jpg"), _image(rng, size))
            if split == "test":
                continue
            label = _blocky(rng, np.arange(21, dtype=np.uint8), size)
            edges = np.zeros(size, bool)
            edges[:, 7::8] = edges[7::8, :] = True
            label[edges] = 255
            if split != "extra":
                png = Image.fromarray(label)
                png.putpalette(palette)
                png.save(voc / "SegmentationClass" / f"{stem}.png")
            if sbd_extra and split in ("train", "extra"):
                Image.fromarray(label).save(voc / "SegmentationClassAug" / f"{stem}.png")
    for split in ("train", "val", "test"):
        (sets / f"{split}.txt").write_text("".join(f"{s}\n" for s in lists[split]))
    (sets / "trainval.txt").write_text("".join(f"{s}\n" for s in lists["train"] + lists["val"]))
    if sbd_extra:
        aug = sorted(lists["train"] + lists["extra"])
        (sets / "train_aug.txt").write_text("".join(f"{s}\n" for s in aug))
    return Path(root)


def make_ade20k(
    root: str | Path,
    num_train: int = 4,
    num_val: int = 2,
    num_test: int = 0,
    sizes: tuple[tuple[int, int], ...] = ((48, 64), (64, 40), (56, 56)),
    seed: int = 0,
) -> Path:
    """ADE20K: ``ADEChallengeData2016/{images,annotations}/{training,validation}``.

    Annotations are grey PNGs with values 0..150 (0 = "other", always in the top-left block).
    ``num_test`` images go to ``images/testing`` (no annotations), as a test release would be.
    """
    rng = np.random.default_rng(seed)
    ade = Path(root) / "ADEChallengeData2016"
    n = 0
    for split, folder, count in (
        ("train", "training", num_train),
        ("val", "validation", num_val),
        ("test", "testing", num_test),
    ):
        for i in range(count):
            size = sizes[n % len(sizes)]
            n += 1
            stem = f"ADE_{split}_{i + 1:08d}"
            (ade / "images" / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ade / "images" / folder / f"{stem}.jpg"), _image(rng, size))
            if split != "test":
                (ade / "annotations" / folder).mkdir(parents=True, exist_ok=True)
                label = _blocky(rng, np.arange(151, dtype=np.uint8), size)
                label[:8, :8] = 0  # every annotation has some "other"
                cv2.imwrite(str(ade / "annotations" / folder / f"{stem}.png"), label)
    return Path(root)


class OracleModel(L.LightningModule):
    """A "model" whose ``predict_step`` returns given train-id maps, looked up by image name.

    Args:
        predictions: ``{image name: LongTensor (H, W)}``.
        logits: Return one-hot logits ``(N, C, H, W)`` instead of ids (``C = num_classes``).
        num_classes: Channels of the one-hot logits.
    """

    def __init__(
        self, predictions: dict[str, torch.Tensor], logits: bool = False, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.predictions = predictions
        self.logits = logits
        self.num_classes = num_classes

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids = torch.stack([self.predictions[name] for name in batch["name"]])
        if not self.logits:
            return ids
        return torch.nn.functional.one_hot(ids, self.num_classes).permute(0, 3, 1, 2).float()


def predict(datamodule: L.LightningDataModule, model: L.LightningModule, writer: object) -> None:
    """``trainer.predict`` on CPU with ``writer`` as the only callback."""
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[writer],
    )
    trainer.predict(model, datamodule=datamodule, return_predictions=False)
