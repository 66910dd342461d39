"""ADE20K scene parsing (Zhou et al., CVPR 2017): the 150-class SceneParsing benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_nas.data.base import SegmentationDataModule, match_pairs
from lightning_nas.data.palette import bitwise_palette
from lightning_nas.errors import ConfigError

__all__ = ["ADE20KDataModule"]

# First name of each class of objectInfo150.csv (the benchmark's class list), in label order.
CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

#: Raw annotation value -> train id: 0 ("other") -> 255, 1..150 -> 0..149.
RAW_TO_TRAIN_ID = np.concatenate([[255], np.arange(150)])
_FOLDERS = {"train": "training", "val": "validation", "test": "testing"}


class ADE20KDataModule(SegmentationDataModule):
    """ADE20K / SceneParsing: 150 classes (20210 train / 2000 val images of varied sizes).

    Layout under ``root`` (as ``ADEChallengeData2016.zip`` unpacks; ``root`` may also be the
    ``ADEChallengeData2016`` folder itself)::

        ADEChallengeData2016/images/{training,validation}/ADE_<split>_<n>.jpg
        ADEChallengeData2016/annotations/{training,validation}/ADE_<split>_<n>.png
        ADEChallengeData2016/images/testing/ADE_test_<n>.jpg     (optional, for predict)

    Annotations are grey PNGs: 0 is "other" and is ignored (255), 1..150 become train ids
    0..149; any other value is an error.

    Protocol (DeepLab / DPC): every image is first resized so that its longer side is 513
    (``long_side``), then random scale 0.5–2.0, 513×513 crops padded with 255, flips.
    Evaluation on the whole (resized) image, ``eval_batch_size=1``. ``predict`` writes
    ``<name>.png`` with values 1..150 (the challenge's submission format) at the size on disk.

    Defaults of the arguments (all of :class:`~lightning_nas.data.base.SegmentationDataModule`;
    ADE20K has none of its own): ``root: data/ade20k`` (the folder holding
    ``ADEChallengeData2016``), ``num_workers: 4``, ``pin_memory: true``, ``crop_size: auto``
    (513; ``null``: no crop), ``long_side: auto`` (513; ``null``: the size on disk),
    ``scale_range: [0.5, 2.0]``, ``eval_batch_size: auto`` (1), ``predict_split: null`` (val;
    ``test``: ``images/testing``, without labels).

    Example:
        >>> dm = ADE20KDataModule(root="data/ade20k")
        >>> dm.num_classes, dm.class_names[:3], dm.long_side, dm.crop_size
        (150, ['wall', 'building', 'sky'], 513, 513)
        >>> dm.label_mapping()(np.array([[0, 1, 150]], np.uint8)).tolist()
        [[255, 0, 149]]
    """

    CLASS_NAMES = CLASS_NAMES
    PALETTE = bitwise_palette(151)[1:]
    label_lut = RAW_TO_TRAIN_ID
    source = (
        "ADE20K's SceneParsing release is ADEChallengeData2016.zip from "
        "http://sceneparsing.csail.mit.edu (unzip it into the root)."
    )

    default_root = "data/ade20k"
    default_num_workers = 4
    default_pin_memory = True
    auto_crop_size = 513
    auto_long_side = 513  # DeepLab / DPC resize every image first
    auto_eval_batch_size = 1  # image sizes differ

    @property
    def ade_dir(self) -> Path:
        """``root/ADEChallengeData2016``, or ``root`` if it holds ``images/`` itself."""
        root = Path(self.root)
        nested = root / "ADEChallengeData2016"
        return root if (root / "images").is_dir() and not nested.is_dir() else nested

    def _folder(self, split: str) -> str:
        if split not in _FOLDERS:
            raise ConfigError(f"ADE20K splits are {', '.join(_FOLDERS)}; got {split!r}")
        return _FOLDERS[split]

    def list_pairs(self, split: str) -> list[tuple[Path, Path]]:
        """Image / annotation pairs of ``train`` (training) or ``val`` (validation)."""
        folder = self._folder(split)
        return match_pairs(
            self.require_dir(self.ade_dir / "images" / folder),
            self.require_dir(self.ade_dir / "annotations" / folder),
            ".jpg",
            ".png",
            problems=self.listing_problems,
        )

    def list_images(self, split: str) -> list[Path]:
        """The ``.jpg`` images of ``split`` (``test``: ``images/testing``, unlabelled)."""
        folder = self.require_dir(self.ade_dir / "images" / self._folder(split))
        images = sorted(folder.rglob("*.jpg"))
        if not images:
            raise FileNotFoundError(f"no '*.jpg' images under '{folder}'")
        return images

    def encode_submission(self, prediction: np.ndarray) -> np.ndarray:
        """Train ids 0..149 -> the challenge's values 1..150."""
        return (prediction.astype(np.int64) + 1).clip(0, 255).astype(np.uint8)
