"""Cityscapes (Cordts et al., CVPR 2016) in its official layout, with the official label table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from cityscapesscripts.helpers.labels import labels as _LABELS

from lightning_nas.data.base import SegmentationDataModule, match_pairs
from lightning_nas.errors import ConfigError

__all__ = ["CityscapesDataModule", "ID_TO_TRAIN_ID", "TRAIN_ID_TO_ID"]

_TRAINED = sorted((lb for lb in _LABELS if 0 <= lb.trainId < 255), key=lambda lb: lb.trainId)
_NUM_IDS = max(lb.id for lb in _LABELS) + 1  # 34: label ids 0..33 (license plate is -1)

#: ``ID_TO_TRAIN_ID[label_id]``: the 34 label ids -> 19 train ids, every other id -> 255.
ID_TO_TRAIN_ID = np.full(_NUM_IDS, 255, np.int64)
for _label in _LABELS:
    if _label.id >= 0 and 0 <= _label.trainId < 255:
        ID_TO_TRAIN_ID[_label.id] = _label.trainId
#: ``TRAIN_ID_TO_ID[train_id]``: back to label ids for submissions (255 -> 0, "unlabeled").
TRAIN_ID_TO_ID = np.zeros(256, np.uint8)
for _label in _TRAINED:
    TRAIN_ID_TO_ID[_label.trainId] = _label.id

_SUFFIX = {"fine": "_gtFine_labelIds.png", "coarse": "_gtCoarse_labelIds.png"}
#: ``crop_size`` / ``long_side`` ``"auto"`` in search mode (Auto-DeepLab's search).
_SEARCH_PROTOCOL = {"crop_size": 321, "long_side": 1024}
_SPLITS = ("train", "val", "test", "train_extra")


class CityscapesDataModule(SegmentationDataModule):
    """Cityscapes: 19 classes of urban street scenes (2975 train / 500 val / 1525 test, fine).

    Layout, as the official zips (``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip``,
    optionally ``leftImg8bit_trainextra.zip`` and ``gtCoarse.zip``) unpack into ``root``::

        leftImg8bit/{train,val,test,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
        gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
        gtCoarse/{train,train_extra,val}/<city>/<city>_<seq>_<frame>_gtCoarse_labelIds.png

    Labels are the ``*_labelIds.png`` files; the 34 label ids map to the 19 train ids of
    ``cityscapesscripts.helpers.labels`` (the official table), every other id to 255; values
    above 33 are rejected. The other ground-truth files (``_color``, ``_instanceIds``,
    ``_polygons.json``, ``_labelTrainIds``) are ignored.

    Protocol (the ``"auto"`` defaults): the search (``search=True``) trains on 321×321 crops of
    half-resolution images (``long_side=1024``) as Auto-DeepLab; otherwise 769×769 crops at full
    resolution; random scale 0.5–2.0 (DeepLab) and flips in both. The method recipes narrow the
    scale: the Auto-DeepLab search uses none (``scale_range: [1.0, 1.0]``); the FasterSeg release
    draws one of ``scales: [0.75, 1.0, 1.25]``. Evaluation on whole images (at half resolution in
    search mode, so that the search's val mIoU is cheap). ``predict`` writes
    label-id PNGs ``<city>_<seq>_<frame>_pred.png`` at full resolution, as the official
    ``evalPixelLevelSemanticLabeling`` script finds them (``CITYSCAPES_RESULTS``).

    Defaults of the shared arguments (of
    :class:`~lightning_nas.data.base.SegmentationDataModule`, passed on with ``**kwargs``):
    ``root: data/cityscapes`` (the folder holding ``leftImg8bit/`` and ``gtFine/``, and
    ``gtCoarse/``), ``num_workers: 4``, ``pin_memory: true``, ``crop_size: auto`` (321 in search
    mode, else 769; ``null``: no crop), ``long_side: auto`` (1024 in search mode, else the full
    resolution; ``null``: full resolution), ``scale_range: [0.5, 2.0]``,
    ``eval_batch_size: auto`` (``batch_size``), ``predict_split: null`` (val; ``test`` for a
    benchmark submission).

    Args:
        train_set: Training images: ``"fine"`` (train + gtFine), ``"coarse"`` (train_extra +
            gtCoarse, 19998 images) or ``"fine+coarse"`` (both).
        **kwargs: The shared arguments (see above).

    Example:
        >>> dm = CityscapesDataModule(root="data/cityscapes", search=True)
        >>> dm.num_classes, dm.class_names[:3], dm.crop_size, dm.long_side
        (19, ['road', 'sidewalk', 'building'], 321, 1024)
        >>> dm.label_mapping()(np.array([[7, 26, 0]], np.uint8)).tolist()
        [[0, 13, 255]]
    """

    CLASS_NAMES = tuple(lb.name for lb in _TRAINED)
    PALETTE = tuple(tuple(lb.color) for lb in _TRAINED)
    label_lut = ID_TO_TRAIN_ID
    source = (
        "Cityscapes is at https://www.cityscapes-dataset.com (registration needed): unzip "
        "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into the root "
        "(csDownload from the cityscapesscripts package can fetch them)."
    )

    default_root = "data/cityscapes"
    default_num_workers = 4
    default_pin_memory = True
    auto_crop_size = 769  # DPC / Auto-DeepLab retraining, at full resolution
    auto_long_side = None

    def __init__(
        self, *, train_set: Literal["fine", "coarse", "fine+coarse"] = "fine", **kwargs: Any
    ) -> None:
        """Store ``train_set``; the base takes the shared arguments (see the class docstring)."""
        if train_set not in ("fine", "coarse", "fine+coarse"):
            raise ConfigError(f"train_set must be fine, coarse or fine+coarse, got {train_set!r}")
        super().__init__(**kwargs)
        self.train_set = train_set

    def auto_value(self, key: Literal["crop_size", "long_side", "eval_batch_size"]) -> Any:
        """In search mode Auto-DeepLab's protocol: 321×321 crops of half-resolution images."""
        if self.search and key in _SEARCH_PROTOCOL:
            return _SEARCH_PROTOCOL[key]
        return super().auto_value(key)

    def _match(self, split: str, annotation: Literal["fine", "coarse"]) -> list[tuple[Path, Path]]:
        root = Path(self.root)
        gt = "gtFine" if annotation == "fine" else "gtCoarse"
        return match_pairs(
            self.require_dir(root / "leftImg8bit" / split),
            self.require_dir(root / gt / split),
            "_leftImg8bit.png",
            _SUFFIX[annotation],
            problems=self.listing_problems,
        )

    def list_pairs(self, split: str) -> list[tuple[Path, Path]]:
        """Image / ``labelIds`` pairs of ``split`` (``train`` follows ``train_set``)."""
        if split not in _SPLITS:
            raise ConfigError(f"Cityscapes splits are {', '.join(_SPLITS)}; got {split!r}")
        if split != "train":
            return self._match(split, "coarse" if split == "train_extra" else "fine")
        pairs = []
        if self.train_set in ("fine", "fine+coarse"):
            pairs += self._match("train", "fine")
        if self.train_set in ("coarse", "fine+coarse"):
            pairs += self._match("train_extra", "coarse")
        return pairs

    def list_images(self, split: str) -> list[Path]:
        """The images of ``split`` (labels not needed: the test labels are placeholders)."""
        if split not in _SPLITS:
            raise ConfigError(f"Cityscapes splits are {', '.join(_SPLITS)}; got {split!r}")
        folder = self.require_dir(Path(self.root) / "leftImg8bit" / split)
        images = sorted(folder.rglob("*_leftImg8bit.png"))
        if not images:
            raise FileNotFoundError(f"no '*_leftImg8bit.png' images under '{folder}'")
        return images

    def encode_submission(self, prediction: np.ndarray) -> np.ndarray:
        """Train ids -> label ids (what the official evaluation reads); 255 -> 0."""
        return TRAIN_ID_TO_ID[prediction.astype(np.uint8)]

    def submission_name(self, name: str) -> str:
        """``<city>_<seq>_<frame>_leftImg8bit`` -> ``<city>_<seq>_<frame>_pred.png``."""
        return f"{name.removesuffix('_leftImg8bit')}_pred.png"
