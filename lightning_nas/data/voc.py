"""PASCAL VOC 2012 segmentation (Everingham et al.), with SBD's augmented training set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.data._io import read_palette_label
from lightning_nas.data.base import SegmentationDataModule, SegmentationDataset, existing_pairs
from lightning_nas.data.palette import bitwise_palette
from lightning_nas.errors import ConfigError

__all__ = ["VOCDataModule", "VOCDataset"]

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
_AUG_LISTS = ("train_aug.txt", "trainaug.txt")


class VOCDataset(SegmentationDataset):
    """Reads labels with Pillow: VOC's palette PNGs hold class indices, not colours."""

    def read_label(self, path: str) -> np.ndarray:
        """Palette / grey PNG -> indices ``(H, W)`` uint8."""
        return read_palette_label(path)


class VOCDataModule(SegmentationDataModule):
    """PASCAL VOC 2012: 20 object classes + background (1464 train / 1449 val; 10582 train_aug).

    Layout under ``root`` (as ``VOCtrainval_11-May-2012.tar`` unpacks; ``root`` may also be
    the ``VOCdevkit`` or ``VOC2012`` folder itself)::

        VOCdevkit/VOC2012/JPEGImages/<id>.jpg
        VOCdevkit/VOC2012/SegmentationClass/<id>.png         palette PNGs, 255 = object border
        VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,test}.txt
        VOCdevkit/VOC2012/SegmentationClassAug/<id>.png      SBD-augmented labels (optional)
        VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt   their 10582 ids (optional)

    Label PNGs are read with Pillow (OpenCV would turn the palette into colours); values
    0..20 are the classes and 255 (the border band) is ignored; any other value is an error.
    With ``train_aug`` (default: when ``SegmentationClassAug`` and ``train_aug.txt`` — or
    DeepLab's ``trainaug.txt`` — exist) training uses SBD's 10582 images and labels; the list
    may hold ids or ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` lines. A training
    list sharing images with val is refused. Val always uses ``SegmentationClass``.

    Protocol: random scale 0.5–2.0, 513×513 crops (padded with 255), flips; evaluation on
    whole images (``eval_batch_size=1``, as their sizes differ). ``predict`` writes palette PNGs
    of the class indices into ``results/VOC2012/Segmentation/comp6_test_cls/`` (the evaluation
    server's layout; comp6 because SBD is outside data).

    Defaults of the shared arguments (of
    :class:`~lightning_nas.data.base.SegmentationDataModule`, passed on with ``**kwargs``):
    ``root: data/voc`` (the folder holding ``VOCdevkit/VOC2012``), ``num_workers: 4``,
    ``pin_memory: true``, ``crop_size: auto`` (513; ``null``: no crop), ``long_side: auto``
    (the size on disk), ``scale_range: [0.5, 2.0]``, ``eval_batch_size: auto`` (1),
    ``predict_split: null`` (val; ``test``: the ids of ``test.txt``, without labels).

    Args:
        train_aug: Train on SBD's ``train_aug`` set; ``None``: when it is present.
        **kwargs: The shared arguments (see above).

    Example:
        >>> dm = VOCDataModule(root="data/voc")
        >>> dm.num_classes, dm.class_names[15], dm.palette[15], dm.crop_size
        (21, 'person', (192, 128, 128), 513)
    """

    CLASS_NAMES = CLASS_NAMES
    PALETTE = bitwise_palette(21)
    source = (
        "PASCAL VOC 2012 is at http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ "
        "(VOCtrainval_11-May-2012.tar, unpacked into the root); the optional augmented set "
        "(SegmentationClassAug + train_aug.txt) is made from SBD "
        "(http://home.bharathh.info/pubs/codes/SBD/download.html)."
    )
    dataset_class = VOCDataset
    submission_dir = "results/VOC2012/Segmentation/comp6_test_cls"
    submission_palette = True

    default_root = "data/voc"
    default_num_workers = 4
    default_pin_memory = True
    auto_crop_size = 513
    auto_eval_batch_size = 1  # image sizes differ

    def __init__(self, *, train_aug: bool | None = None, **kwargs: Any) -> None:
        """Store the arguments (nothing is read before ``setup``)."""
        super().__init__(**kwargs)
        self.train_aug = train_aug

    @property
    def voc_dir(self) -> Path:
        """The ``VOC2012`` folder: ``root/VOCdevkit/VOC2012``, ``root/VOC2012`` or ``root``."""
        root = Path(self.root)
        for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
            if (candidate / "JPEGImages").is_dir():
                return candidate
        self.require_dir(root)
        return self.require_dir(root / "VOCdevkit" / "VOC2012" / "JPEGImages").parent

    def _aug_list(self) -> Path | None:
        sets = self.voc_dir / "ImageSets" / "Segmentation"
        return next((sets / n for n in _AUG_LISTS if (sets / n).is_file()), None)

    def uses_train_aug(self) -> bool:
        """Whether training uses SBD's augmented set (``train_aug``, or auto-detected)."""
        if self.train_aug is not None:
            return self.train_aug
        return (self.voc_dir / "SegmentationClassAug").is_dir() and self._aug_list() is not None

    def _ids(self, list_file: Path) -> list[str]:
        if not list_file.is_file():
            raise FileNotFoundError(
                f"{type(self).__name__}: expected list '{list_file}' not found. {self.source}"
            )
        ids = []
        for line in list_file.read_text().splitlines():
            if line.strip():
                ids.append(Path(line.split()[0]).stem)
        if not ids:
            raise FileNotFoundError(
                f"{type(self).__name__}: list '{list_file}' is empty; expected one image id "
                "per line"
            )
        return ids

    def list_pairs(self, split: str) -> list[tuple[Path, Path]]:
        """Image / label pairs of ``train`` (or ``train_aug``) and ``val``."""
        voc = self.voc_dir
        sets = voc / "ImageSets" / "Segmentation"
        if split == "train" and self.uses_train_aug():
            aug_list = self._aug_list() or sets / _AUG_LISTS[0]
            ids, labels = self._ids(aug_list), self.require_dir(voc / "SegmentationClassAug")
            overlap = set(ids) & set(self._ids(sets / "val.txt"))
            if overlap:
                raise ConfigError(
                    f"'{aug_list}' shares {len(overlap)} images with val.txt (e.g. "
                    f"{sorted(overlap)[0]}): training on them would inflate val mIoU"
                )
        elif split in ("train", "val"):
            ids, labels = self._ids(sets / f"{split}.txt"), voc / "SegmentationClass"
            self.require_dir(labels)
        else:
            raise ConfigError(f"VOC has labelled splits train and val; got {split!r}")
        images = self.require_dir(voc / "JPEGImages")
        return existing_pairs(
            [(images / f"{i}.jpg", labels / f"{i}.png") for i in ids], self.listing_problems
        )

    def list_images(self, split: str) -> list[Path]:
        """The images listed in ``ImageSets/Segmentation/<split>.txt``."""
        if split not in ("train", "val", "test"):
            raise ConfigError(f"VOC splits are train, val and test; got {split!r}")
        voc = self.voc_dir
        images = [
            voc / "JPEGImages" / f"{i}.jpg"
            for i in self._ids(voc / "ImageSets" / "Segmentation" / f"{split}.txt")
        ]
        missing = [p for p in images if not p.is_file()]
        if missing:
            self.listing_problems += [
                f"image '{p}' listed in {split}.txt is missing" for p in missing
            ]
        return [p for p in images if p.is_file()]
