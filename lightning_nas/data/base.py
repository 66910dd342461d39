"""Base classes every segmentation dataset builds on: the dataset, the DataModule, seeding.

A dataset's DataModule subclasses :class:`SegmentationDataModule` and says only

(a) how to list ``(image_path, label_path)`` pairs of a split
    (:meth:`~SegmentationDataModule.list_pairs`, usually one call to :func:`match_pairs`),
(b) how raw label values map to train ids
    (``label_lut`` or :meth:`~SegmentationDataModule.label_mapping`),
(c) its metadata (``CLASS_NAMES``, ``PALETTE``, ``ignore_index``, ``source``),
(d) its protocol defaults, as class attributes that arguments left at ``None`` / ``"auto"`` take
    (``default_root``, ``default_num_workers``, ``default_pin_memory``, ``default_scale_range``,
    ``auto_crop_size``, ``auto_long_side``, ``auto_eval_batch_size``), plus an ``__init__`` for
    its own arguments only, passing the shared ones on with ``**kwargs``, and
(e) optionally, its submission format (:meth:`~SegmentationDataModule.encode_submission`,
    :meth:`~SegmentationDataModule.submission_name`, ``submission_dir``, ``submission_palette``),
    which ``callbacks.PredictionWriter`` writes.

Splits, search mode (trainA / trainB), loaders, reading, bad-input handling (``skip_invalid``)
and augmentation seeding live here.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import albumentations as A
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from lightning_nas.data._io import InvalidSampleError, read_image, read_label
from lightning_nas.data._labels import LabelLUT, identity_lut
from lightning_nas.data._listing import existing_pairs, match_pairs
from lightning_nas.data.loader import ResumableDataLoader, SeededIndex, SkippedSamplesWarning
from lightning_nas.data.transforms import (
    DEFAULT_SCALE_RANGE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_scales,
    eval_transform,
    seed_transform,
    train_transform,
)
from lightning_nas.errors import ConfigError

__all__ = [
    "InvalidSampleError",
    "LabelLUT",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SkippedSamplesWarning",
    "existing_pairs",
    "identity_lut",
    "match_pairs",
    "seed_worker",
    "split_indices",
]

Pair = tuple[str, str | None]


def split_indices(num: int, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(num)`` into two disjoint halves by a permutation seeded with ``seed`` only.

    The result depends on nothing but ``(num, seed)``, so every DDP rank computes the same split.
    The first half gets the extra index when ``num`` is odd; both halves are sorted.

    Args:
        num: Number of items (at least 2).
        seed: Seed of the permutation.

    Returns:
        ``(first_half, second_half)``.

    Raises:
        ValueError: If ``num < 2``.

    Example:
        >>> split_indices(5, seed=0)
        ([0, 1, 4], [2, 3])
    """
    if num < 2:
        raise ConfigError(f"search mode needs at least 2 training images to split, got {num}")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed)).tolist()
    half = (num + 1) // 2
    return sorted(perm[:half]), sorted(perm[half:])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed the worker's copy of the albumentations pipeline.

    albumentations 2.0.8 keeps its own generators, which every forked worker inherits unchanged:
    without this all workers would produce the same augmentations. The seed is the worker's
    torch seed (``base_seed + worker_id``, with ``base_seed`` drawn from the main process's
    global torch generator when the first batch is requested), so augmentations differ between
    workers and are fixed by ``torch.manual_seed`` before the epoch. Datasets other than
    :class:`SegmentationDataset` get ``dataset.transform`` reseeded if they have one.

    Args:
        worker_id: Index of the worker (unused; the seed comes from ``get_worker_info()``).
    """
    info = get_worker_info()
    if isinstance(info.dataset, SegmentationDataset):
        info.dataset.reseed(info.seed % 2**32)
    elif getattr(info.dataset, "transform", None) is not None:
        seed_transform(info.dataset.transform, info.seed % 2**32)


class SegmentationDataset(Dataset):
    """Image / label file pairs read with OpenCV and passed through an albumentations pipeline.

    Items are dicts ``{"image": FloatTensor (3, H, W), "mask": LongTensor (H, W), "name": str}``;
    ``"mask"`` is absent for pairs without a label. ``name`` is the image file's stem. With
    ``with_size=True`` items also carry ``"size"``: LongTensor ``(2,)``, the image's height and
    width on disk (before any resize), which prediction writers need.

    Bad input: a missing, truncated or unreadable file, an image and label of different sizes,
    or a label value that is not a label of the dataset raises :class:`InvalidSampleError`
    naming the file. With ``skip_invalid=True`` the item is replaced by the next valid one
    (``index + 1``, ``index + 2``, ...; so batch shapes and epoch lengths do not change) and
    every item carries ``"skipped"``: a string with one line per file skipped to produce it
    (empty almost always). The DataModule's loaders take that key out of each batch and warn
    with the count at the end of the epoch (:class:`SkippedSamplesWarning`).

    Seeding: with ``seed_from_torch=True`` and outside a DataLoader worker (``num_workers=0``),
    each item first reseeds the pipeline from one draw of torch's *global* generator, so
    ``torch.manual_seed(k)`` before an epoch fixes that epoch's augmentations exactly. The
    DataModules' loaders with workers pass each training index as a
    :class:`~lightning_nas.data.loader.SeededIndex` instead, whose seed (drawn once per epoch in
    the main process) is mixed with the index, so an item's augmentation does not depend on the
    worker that loads it (a loader resumed mid-epoch reproduces the rest of the epoch). Other
    loaders' workers are seeded once per worker by :func:`seed_worker`. Every seed is mixed
    with ``rank``: DDP ranks, reseeded alike (as they must be for the architecture sampling),
    then still augment differently.

    Args:
        pairs: ``(image_path, label_path)`` pairs; ``label_path`` may be ``None`` (unlabelled).
        transform: Pipeline called as ``transform(image=..., mask=...)``, ending in ``ToTensorV2``.
            ``None`` only scales the image to [0, 1].
        label_mapping: Maps the raw label array (as :meth:`read_label` returns it) to train ids,
            e.g. a :class:`LabelLUT`; raises ``ValueError`` on values it does not know. Must be
            picklable for workers.
        seed_from_torch: Reseed ``transform`` per item from torch's global generator (see above).
            Set it for random pipelines; leave it off for deterministic ones so evaluation does
            not consume random numbers.
        rank: Global rank of the process, mixed into every augmentation seed.
        skip_invalid: Replace invalid samples by the next valid one instead of raising.
        with_size: Add each image's size on disk to its item.
    """

    #: Shown in the end-of-epoch warning about skipped samples (set by the DataModule).
    description: str = "dataset"
    #: Items accept a :class:`~lightning_nas.data.loader.SeededIndex` (read by the loader).
    seeded_items: ClassVar[bool] = True

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path | None]],
        transform: A.BaseCompose | None = None,
        label_mapping: Callable[[np.ndarray], np.ndarray] | None = None,
        seed_from_torch: bool = False,
        rank: int = 0,
        skip_invalid: bool = False,
        with_size: bool = False,
    ) -> None:
        """Store the pairs (as strings) and the pipeline (see the class docstring)."""
        self.pairs: list[Pair] = [
            (str(image), None if label is None else str(label)) for image, label in pairs
        ]
        self.transform = transform
        self.label_mapping = label_mapping
        self.seed_from_torch = seed_from_torch
        self.rank = rank
        self.skip_invalid = skip_invalid
        self.with_size = with_size

    def __len__(self) -> int:
        """Number of pairs."""
        return len(self.pairs)

    def __getitem__(self, index: int | SeededIndex) -> dict[str, torch.Tensor | str]:
        """Read, map and transform pair ``index`` (see the class docstring for the format).

        A :class:`~lightning_nas.data.loader.SeededIndex` also gives the augmentation's seed
        (the loader's workers pass one for training items; see the class docstring).
        """
        seed = None
        if isinstance(index, SeededIndex):
            index, seed = index
        if not self.skip_invalid:
            return self._item(index, seed)
        skipped: list[str] = []
        for offset in range(len(self)):
            i = (index + offset) % len(self)
            try:
                item = self._item(i, seed)
            except InvalidSampleError as err:
                skipped.append(" ".join(str(err).split()))
                continue
            item["skipped"] = "\n".join(skipped)
            return item
        raise InvalidSampleError(
            f"all {len(self)} samples of {self.description} are invalid, e.g. {skipped[0]}"
        )

    def _item(self, index: int, seed: int | None = None) -> dict[str, torch.Tensor | str]:
        image, label = self.load(index)
        if seed is not None and self.transform is not None:
            self.reseed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
        elif self.seed_from_torch and self.transform is not None and get_worker_info() is None:
            self.reseed(int(torch.randint(2**32, ()).item()))
        item: dict[str, torch.Tensor | str] = {"name": Path(self.pairs[index][0]).stem}
        if self.with_size:
            item["size"] = torch.tensor(image.shape[:2], dtype=torch.long)
        if self.transform is None:
            item["image"] = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
            if label is not None:
                item["mask"] = torch.from_numpy(label.astype(np.int64))
            return item
        out = (
            self.transform(image=image)
            if label is None
            else self.transform(image=image, mask=label)
        )
        item["image"] = out["image"]
        if label is not None:
            item["mask"] = torch.as_tensor(out["mask"]).long()
        return item

    def reseed(self, seed: int) -> None:
        """Reseed ``transform`` from ``seed`` mixed with ``rank``."""
        if self.transform is not None:
            mixed = np.random.SeedSequence([seed, self.rank]).generate_state(1)[0]
            seed_transform(self.transform, int(mixed))

    def read_image(self, path: str) -> np.ndarray:
        """Decode an image file to RGB uint8 ``(H, W, 3)`` (OpenCV)."""
        return read_image(path)

    def read_label(self, path: str) -> np.ndarray:
        """Decode a label file to its raw values (OpenCV, unchanged); override for palettes."""
        return read_label(path)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Read pair ``index``: RGB uint8 image ``(H, W, 3)`` and mapped label ``(H, W)`` or None.

        Raises:
            InvalidSampleError: Naming the file, if a file is missing, truncated or unreadable,
                the label is not single-channel, holds values that are not labels of the
                dataset, or image and label sizes differ.
        """
        image_path, label_path = self.pairs[index]
        image = self.read_image(image_path)
        if label_path is None:
            return image, None
        label = self.read_label(label_path)
        if label.ndim != 2:
            raise InvalidSampleError(
                f"label '{label_path}' has {label.shape[2]} channels; expected one channel of "
                "label ids (not a colour rendering)"
            )
        if self.label_mapping is not None:
            try:
                label = self.label_mapping(label)
            except (IndexError, ValueError) as err:
                raise InvalidSampleError(
                    f"cannot map label values of '{label_path}': {err}"
                ) from err
        if label.shape != image.shape[:2]:
            raise InvalidSampleError(
                f"label '{label_path}' is {_hw(label.shape)} but its image '{image_path}' is "
                f"{_hw(image.shape)} (height x width); expected the same size"
            )
        return image, label


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"


class SegmentationDataModule(L.LightningDataModule, ABC):
    """Splits, search-mode halves and loaders shared by every segmentation dataset.

    Subclasses set the class attributes below (metadata and protocol defaults), implement
    :meth:`list_pairs`, and declare an ``__init__`` only for arguments of their own, passing the
    shared ones on with ``**kwargs``: jsonargparse follows ``**kwargs`` into this ``__init__``, so
    the CLI shows and checks every argument. The shared arguments are declared here, once. Where
    the datasets' defaults differ, the argument defaults to ``None`` or ``"auto"`` and takes the
    dataset's class attribute ``default_<argument>`` or ``auto_<argument>`` (or
    :meth:`auto_value`); ``predict_split: null`` takes ``val_split``::

        argument                Cityscapes           VOC         ADE20K       synthetic
        root: null              data/cityscapes      data/voc    data/ade20k  data/synthetic
        num_workers: null       4                    4           4            0
        pin_memory: null        true                 true        true         false
        scale_range: null       [0.5, 2.0]           [0.5, 2.0]  [0.5, 2.0]   [1.0, 1.0]
        crop_size: auto         769 (search: 321)    513         513          image_size
        long_side: auto         null (search: 1024)  null        513          null
        eval_batch_size: auto   batch_size           1           1            batch_size
        predict_split: null     val                  val         val          val

    Loaders and batches:

    * ``train_dataloader()``: shuffled, ``drop_last`` when the set is larger than a batch, random
      scale / pad / crop / flip. In search mode (``search=True``) the training split is divided
      into disjoint halves trainA / trainB by :func:`split_indices` (``search_split_seed``, same
      on every DDP rank) and the method returns ``{"weights": loader(trainA), "arch":
      loader(trainB)}``; Lightning's CombinedLoader (``max_size_cycle``) then yields
      ``{"weights": batch, "arch": batch}`` per step. Under DDP Lightning gives each of the
      two loaders its own ``DistributedSampler``, so each rank reads its own shard of each half.
    * ``val_dataloader()``: the val split, whole images, only normalised (and resized when
      ``long_side`` is set).
    * ``test_dataloader()``: ``test_split`` if the dataset has a labelled one, else val.
    * ``predict_dataloader()``: the images of ``predict_split`` (default val), without labels;
      items carry ``"size"`` (height, width on disk) for the prediction writer.

    A batch is ``{"image": FloatTensor (N, 3, H, W), "mask": LongTensor (N, H, W), "name":
    list[str]}`` with ``ignore_index`` (255) in the mask where there is no label.

    Bad input: a missing root or split folder raises ``FileNotFoundError`` naming the expected
    path and ``source``. An image without its label or a label without its image (found when
    the split is listed), and an unreadable or truncated file or a label value that is not a
    label of the dataset (found when it is read), raise :class:`InvalidSampleError` naming the
    file. With ``skip_invalid=True`` such files are skipped instead and a
    :class:`SkippedSamplesWarning` counts them: when the split is listed, and at the end of each
    epoch of each loader (the loader then serves the next valid sample in place of a skipped
    one, so batch shapes and the number of steps do not change).

    Determinism: with ``persistent_workers=False`` (default), ``torch.manual_seed(k)`` in
    ``on_train_epoch_start`` fixes the order and the augmentations of that epoch, for any
    ``num_workers``, also in the first epoch after resuming from a checkpoint: loaders create
    their iterator at the first batch, and augmentation seeds come from torch's global
    generator (per item without workers; with workers one per epoch, mixed with each item's
    index; see :class:`SegmentationDataset`), mixed with the DDP rank. Under DDP Lightning's
    ``DistributedSampler`` decides the order (from its own seed and the epoch). The training
    loaders are resumable mid-epoch (:mod:`lightning_nas.data.loader`): with
    :class:`callbacks.ExactResume` a search resumed from a checkpoint saved between two batches
    continues bit-identically.

    Args:
        root: Dataset root folder. ``None``: the dataset's ``default_root`` (``data/cityscapes``,
            ``data/voc``, ``data/ade20k``, ``data/synthetic``).
        batch_size: Training batch size (per process under DDP; per half in search mode).
        num_workers: DataLoader worker processes. ``None``: the dataset's
            ``default_num_workers`` (4 for the datasets on disk, 0 for the synthetic one).
        pin_memory: Pin batches in page-locked memory. ``None``: the dataset's
            ``default_pin_memory`` (true for the datasets on disk, false for the synthetic one).
        persistent_workers: Keep workers between epochs (only used when ``num_workers > 0``).
            Workers are then not reseeded each epoch, so epochs are no longer fixed by
            ``torch.manual_seed`` at epoch start.
        search: Search mode: training loader pairs trainA (weights) with trainB (architecture).
        search_split_seed: Seed of the trainA / trainB split.
        crop_size: Training crop ``(height, width)`` or an int; ``None`` for no crop (synthetic:
            ``image_size``). ``"auto"``: the dataset's ``auto_crop_size`` (Cityscapes 769, 321 in
            search mode; VOC and ADE20K 513; synthetic ``image_size``).
        scale_range: ``[low, high]`` of a continuous uniform random training scale factor
            (DeepLab: ``[0.5, 2.0]``); ``[1.0, 1.0]`` disables it. ``None`` (and no ``scales``):
            the dataset's ``default_scale_range`` (``[0.5, 2.0]``; synthetic ``[1.0, 1.0]``).
        scales: Instead of ``scale_range``, a list of scale factors drawn with equal
            probability (FasterSeg: ``[0.75, 1.0, 1.25]``). Giving both raises.
        hflip: Random horizontal flips in training.
        eval_batch_size: Batch size of val / test / predict loaders (``None``: ``batch_size``).
            Use 1 when a dataset's images differ in size. ``"auto"``: the dataset's
            ``auto_eval_batch_size`` (VOC and ADE20K 1; Cityscapes and synthetic ``batch_size``).
        long_side: Resize every image (every loader) so that its longer side has this many
            pixels before anything else; ``None`` keeps the size on disk. ``"auto"``: the
            dataset's ``auto_long_side`` (ADE20K 513; Cityscapes 1024 in search mode, else the
            size on disk; VOC and synthetic the size on disk).
        skip_invalid: Skip invalid files with a warning instead of raising (see above).
        predict_split: Split whose images ``predict_dataloader`` serves (``None``: the val
            split; ``"test"`` for a benchmark submission, where the dataset has test images).

    Raises:
        ConfigError: On a non-positive batch size, negative ``num_workers``, a bad
            ``scale_range`` or ``scales``, or both of them, or no ``root`` for a dataset without
            ``default_root``.
    """

    #: Class names, in train-id order.
    CLASS_NAMES: ClassVar[tuple[str, ...]] = ()
    #: RGB colour of each class, for visualisation.
    PALETTE: ClassVar[tuple[tuple[int, int, int], ...]] = ()
    #: Mask value of pixels that count neither in the loss nor in the metric.
    ignore_index: ClassVar[int] = 255
    #: Raw label value -> train id (``-1``: not a valid value), or ``None`` when labels already
    #: are train ids (then ``0 .. num_classes-1`` and ``ignore_index`` are valid).
    label_lut: ClassVar[np.ndarray | None] = None
    #: Where the data comes from; ends every "not found" error.
    source: ClassVar[str] = ""
    #: Normalisation of images (RGB, in [0, 1]).
    mean: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    std: ClassVar[tuple[float, ...]] = IMAGENET_STD
    #: Split names passed to :meth:`list_pairs`; ``test_split`` only if it has labels.
    train_split: ClassVar[str] = "train"
    val_split: ClassVar[str] = "val"
    test_split: ClassVar[str | None] = None
    #: Dataset class built for every split (override to read an unusual label format).
    dataset_class: ClassVar[type[SegmentationDataset]] = SegmentationDataset
    #: Folder of the submission files, relative to the prediction writer's submission folder.
    submission_dir: ClassVar[str] = ""
    #: Write submission PNGs as palette images coloured with ``PALETTE`` (VOC's format).
    submission_palette: ClassVar[bool] = False
    #: Protocol defaults: what an argument left at ``None`` (``default_<argument>``) or
    #: ``"auto"`` (``auto_<argument>``) becomes; see the table above.
    default_root: ClassVar[str | None] = None
    default_num_workers: ClassVar[int] = 0
    default_pin_memory: ClassVar[bool] = False
    #: Random training scale range when neither ``scale_range`` nor ``scales`` is given.
    default_scale_range: ClassVar[tuple[float, float]] = DEFAULT_SCALE_RANGE
    auto_crop_size: ClassVar[int | tuple[int, int] | None] = None
    auto_long_side: ClassVar[int | None] = None
    #: ``None``: the training ``batch_size``.
    auto_eval_batch_size: ClassVar[int | None] = None
    #: Where a training image smaller than the crop sits in its padded crop: ``"top_left"``
    #: (pad at the bottom / right, DeepLab) or ``"center"`` (the FasterSeg release).
    pad_position: ClassVar[Literal["top_left", "center"]] = "top_left"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 8,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        search: bool = False,
        search_split_seed: int = 0,
        crop_size: int | tuple[int, int] | Literal["auto"] | None = "auto",
        scale_range: tuple[float, float] | None = None,
        scales: list[float] | None = None,
        hflip: bool = True,
        eval_batch_size: int | Literal["auto"] | None = "auto",
        long_side: int | Literal["auto"] | None = "auto",
        skip_invalid: bool = False,
        predict_split: str | None = None,
    ) -> None:
        """Take the dataset's defaults, validate and store the arguments (see above)."""
        super().__init__()
        self.save_hyperparameters()  # as given: null / auto are resolved again when reloaded
        self.search = search
        self.search_split_seed = search_split_seed
        root = self.default_root if root is None else root
        if root is None:
            raise ConfigError(f"{type(self).__name__}: root is required (no default_root)")
        if eval_batch_size == "auto":
            eval_batch_size = self.auto_value("eval_batch_size")
        eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {batch_size} / {eval_batch_size}")
        num_workers = self.default_num_workers if num_workers is None else num_workers
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        scale_range, scales = check_scales(scale_range, scales)
        long_side = self.auto_value("long_side") if long_side == "auto" else long_side
        if long_side is not None and long_side < 1:
            raise ConfigError(f"long_side must be >= 1 pixel or null, got {long_side}")
        self.root: str = root
        self.batch_size = batch_size
        self.num_workers: int = num_workers
        self.pin_memory: bool = self.default_pin_memory if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers
        self.crop_size: int | tuple[int, int] | None = (
            self.auto_value("crop_size") if crop_size == "auto" else crop_size
        )
        #: The continuous scale range, or ``None`` when ``scales`` is used.
        self.scale_range: tuple[float, float] | None = (
            self.default_scale_range if scale_range is None and scales is None else scale_range
        )
        #: The discrete scale factors, or ``None`` when ``scale_range`` is used.
        self.scales: tuple[float, ...] | None = scales
        self.hflip = hflip
        self.eval_batch_size: int = eval_batch_size
        self.long_side: int | None = long_side
        self.skip_invalid = skip_invalid
        self.predict_split = predict_split
        #: Lines describing unmatched files of the split being listed; pass it as the
        #: ``problems`` argument of :func:`match_pairs` / :func:`existing_pairs`.
        self.listing_problems: list[str] = []
        self._pairs_cache: dict[str, list[Pair]] = {}
        self._images_cache: dict[str, list[str]] = {}

    # --- what a dataset says ----------------------------------------------------------------

    def auto_value(self, key: Literal["crop_size", "long_side", "eval_batch_size"]) -> Any:
        """What ``key: "auto"`` means for this dataset: its class attribute ``auto_<key>``.

        Override when the protocol depends on another argument (Cityscapes: ``search``);
        ``__init__`` calls it once ``search`` and ``search_split_seed`` are stored.
        """
        return getattr(self, f"auto_{key}")

    @abstractmethod
    def list_pairs(self, split: str) -> list[tuple[Path, Path | None]]:
        """The ``(image_path, label_path)`` pairs of ``split``, in a fixed order.

        Use :meth:`require_dir` on the folders so that a missing one raises a clear error, and
        pass ``problems=self.listing_problems`` to :func:`match_pairs` / :func:`existing_pairs`
        so that unmatched files are reported (or skipped) by the base.
        """

    def list_images(self, split: str) -> list[Path]:
        """The images of ``split`` for prediction (default: those of :meth:`list_pairs`).

        Override for splits that ship without labels (benchmark test sets).
        """
        return [image for image, _ in self.list_pairs(split)]

    def label_mapping(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Picklable callable mapping raw labels to train ids and rejecting unknown values.

        Default: a :class:`LabelLUT` of ``label_lut``, or of :func:`identity_lut` when labels
        already are train ids.
        """
        if self.label_lut is not None:
            return LabelLUT(self.label_lut)
        return LabelLUT(identity_lut(self.num_classes, self.ignore_index))

    def train_transform(self) -> A.Compose:
        """The training pipeline, from the crop, scale, flip, resize and pad settings."""
        return train_transform(
            self.crop_size,
            self.scale_range,
            self.hflip,
            self.mean,
            self.std,
            self.ignore_index,
            long_side=self.long_side,
            scales=self.scales,
            pad_position=self.pad_position,
        )

    def eval_transform(self) -> A.Compose:
        """The evaluation pipeline (resize to ``long_side`` if set, normalise)."""
        return eval_transform(self.mean, self.std, long_side=self.long_side)

    def encode_submission(self, prediction: np.ndarray) -> np.ndarray:
        """Turn predicted train ids ``(H, W)`` into the values of a submission file (uint8).

        Default: the train ids themselves.
        """
        return prediction.astype(np.uint8)

    def submission_name(self, name: str) -> str:
        """File name of the submission for the image whose stem is ``name``."""
        return f"{name}.png"

    # --- metadata ---------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of trained classes (excluding ``ignore_index``)."""
        return len(self.CLASS_NAMES)

    @property
    def class_names(self) -> list[str]:
        """Class names in train-id order."""
        return list(self.CLASS_NAMES)

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """RGB colour per class."""
        return list(self.PALETTE)

    # --- splits -----------------------------------------------------------------------------

    def require_dir(self, path: str | Path) -> Path:
        """Return ``path`` if it is a folder, else raise a one-line ``FileNotFoundError``."""
        path = Path(path)
        if not path.is_dir():
            where = f" {self.source}" if self.source else ""
            raise FileNotFoundError(
                f"{type(self).__name__}: expected directory '{path}' not found.{where}"
            )
        return path

    def pairs(self, split: str) -> list[Pair]:
        """The pairs of ``split`` (listed and checked once, then cached)."""
        if split not in self._pairs_cache:
            self.require_dir(self.root)
            self.listing_problems = []
            listed = self.list_pairs(split)
            self._check_listing(split)
            if not listed:
                raise FileNotFoundError(
                    f"{type(self).__name__}: split '{split}' under '{self.root}' is empty"
                )
            self._pairs_cache[split] = [
                (str(i), None if lb is None else str(lb)) for i, lb in listed
            ]
        return self._pairs_cache[split]

    def images(self, split: str) -> list[str]:
        """The images of ``split`` for prediction (listed once, then cached)."""
        if split not in self._images_cache:
            self.require_dir(self.root)
            self.listing_problems = []
            listed = self.list_images(split)
            self._check_listing(split)
            if not listed:
                raise FileNotFoundError(
                    f"{type(self).__name__}: split '{split}' under '{self.root}' has no images"
                )
            self._images_cache[split] = [str(image) for image in listed]
        return self._images_cache[split]

    def _check_listing(self, split: str) -> None:
        problems, self.listing_problems = self.listing_problems, []
        if not problems:
            return
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        if not self.skip_invalid:
            raise InvalidSampleError(
                f"{type(self).__name__} split '{split}': {problems[0]}{more}; "
                "fix the file or set skip_invalid: true"
            )
        warnings.warn(
            f"{type(self).__name__} split '{split}': skipped {len(problems)} unmatched "
            f"file(s): {problems[0]}{more}",
            SkippedSamplesWarning,
            stacklevel=2,
        )

    def search_split(self) -> tuple[list[int], list[int]]:
        """Indices into the training pairs of trainA (weights) and trainB (architecture)."""
        return split_indices(len(self.pairs(self.train_split)), self.search_split_seed)

    def setup(self, stage: str | None = None) -> None:
        """List (and check) the splits the stage needs; datasets are built by the loaders."""
        if stage in ("fit", None):
            self.pairs(self.train_split)
        if stage in ("fit", "validate", None):
            self.pairs(self.val_split)
        if stage in ("test", None):
            self.pairs(self.test_split or self.val_split)
        if stage in ("predict", None):
            self.images(self.predict_split or self.val_split)

    # --- loaders ----------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """One shuffled loader, or ``{"weights": trainA, "arch": trainB}`` in search mode."""
        pairs = self.pairs(self.train_split)
        if not self.search:
            return self._loader(pairs, "train")
        first, second = self.search_split()
        return {
            "weights": self._loader([pairs[i] for i in first], "trainA"),
            "arch": self._loader([pairs[i] for i in second], "trainB"),
        }

    def val_dataloader(self) -> DataLoader:
        """The val split, whole images."""
        return self._loader(self.pairs(self.val_split), "val")

    def test_dataloader(self) -> DataLoader:
        """The labelled test split if the dataset has one, else val."""
        return self._loader(self.pairs(self.test_split or self.val_split), "test")

    def predict_dataloader(self) -> DataLoader:
        """The images of ``predict_split`` (default val), with their sizes on disk."""
        split = self.predict_split or self.val_split
        return self._loader([(image, None) for image in self.images(split)], "predict")

    def _loader(self, pairs: list[Pair], stage: str) -> DataLoader:
        train = stage.startswith("train")
        dataset = self.dataset_class(
            pairs,
            transform=self.train_transform() if train else self.eval_transform(),
            label_mapping=self.label_mapping(),
            seed_from_torch=train,
            rank=0 if self.trainer is None else self.trainer.global_rank,
            skip_invalid=self.skip_invalid,
            with_size=stage == "predict",
        )
        dataset.description = f"{type(self).__name__} {stage} loader"
        batch_size = self.batch_size if train else self.eval_batch_size
        workers = self.num_workers > 0
        return ResumableDataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers,
            worker_init_fn=seed_worker if workers else None,
        )
