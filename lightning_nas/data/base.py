"""Base classes every segmentation dataset builds on: the dataset, the DataModule, seeding.

A dataset's DataModule subclasses :class:`SegmentationDataModule` and says only

(a) how to list ``(image_path, label_path)`` pairs of a split
    (:meth:`~SegmentationDataModule.list_pairs`, usually one call to :func:`match_pairs`),
(b) how raw label values map to train ids
    (``label_lut`` or :meth:`~SegmentationDataModule.label_mapping`),
(c) its metadata (``CLASS_NAMES``, ``PALETTE``, ``ignore_index``, ``source``), and
(d) its default crop / scale / flip settings, as the defaults of its typed ``__init__``.

Splits, search mode (trainA / trainB), loaders, reading and augmentation seeding live here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from lightning_nas.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
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
    "match_pairs",
    "seed_worker",
    "split_indices",
]

Pair = tuple[str, str | None]


class InvalidSampleError(OSError):
    """An image or label file that cannot be read or does not fit its partner."""


class LabelLUT:
    """Map raw label values to train ids through a lookup table.

    A plain object rather than a closure so that it pickles into DataLoader workers.

    Args:
        lut: ``lut[raw_value] = train_id`` (``ignore_index`` for values that are not trained).

    Example:
        >>> LabelLUT([255, 0, 1])(np.array([[0, 1], [2, 2]], np.uint8)).tolist()
        [[255, 0], [1, 1]]
    """

    def __init__(self, lut: Sequence[int] | np.ndarray) -> None:
        """Store ``lut`` as a uint8 array."""
        self.lut = np.asarray(lut, dtype=np.uint8)

    def __call__(self, label: np.ndarray) -> np.ndarray:
        """Return the train ids of ``label`` (same shape, uint8)."""
        return self.lut[label]


def match_pairs(
    image_dir: str | Path,
    label_dir: str | Path,
    image_suffix: str = ".png",
    label_suffix: str = ".png",
) -> list[tuple[Path, Path]]:
    """Pair every ``*image_suffix`` file under ``image_dir`` with its label under ``label_dir``.

    The label of ``image_dir/a/b_leftImg8bit.png`` with suffixes ``("_leftImg8bit.png",
    "_gtFine_labelIds.png")`` is ``label_dir/a/b_gtFine_labelIds.png``: same relative folder,
    suffix swapped. Pairs come sorted by image path; labels are not checked here (a missing
    label is reported by name when it is read).

    Args:
        image_dir: Folder searched recursively for images.
        label_dir: Folder mirroring ``image_dir`` with the labels.
        image_suffix: End of image file names.
        label_suffix: End of label file names, replacing ``image_suffix``.

    Returns:
        The sorted ``(image_path, label_path)`` pairs.

    Raises:
        FileNotFoundError: If ``image_dir`` holds no matching image.
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    images = sorted(image_dir.rglob(f"*{image_suffix}"))
    if not images:
        raise FileNotFoundError(f"no '*{image_suffix}' images under '{image_dir}'")
    return [
        (
            image,
            label_dir
            / image.relative_to(image_dir).parent
            / (image.name[: -len(image_suffix)] + label_suffix),
        )
        for image in images
    ]


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
    ``"mask"`` is absent for pairs without a label. ``name`` is the image file's stem.

    Seeding: with ``seed_from_torch=True`` and outside a DataLoader worker (``num_workers=0``),
    each item first reseeds the pipeline from one draw of torch's *global* generator, so
    ``torch.manual_seed(k)`` before an epoch fixes that epoch's augmentations exactly. Inside a
    worker the pipeline is seeded once per worker by :func:`seed_worker` instead. Either seed is
    mixed with ``rank``: DDP ranks, reseeded alike (as they must be for the architecture
    sampling), then still augment differently.

    Args:
        pairs: ``(image_path, label_path)`` pairs; ``label_path`` may be ``None`` (unlabelled).
        transform: Pipeline called as ``transform(image=..., mask=...)``, ending in ``ToTensorV2``.
            ``None`` only scales the image to [0, 1].
        label_mapping: Maps the raw label array (as OpenCV reads it) to train ids, e.g. a
            :class:`LabelLUT`. Must be picklable for workers.
        seed_from_torch: Reseed ``transform`` per item from torch's global generator (see above).
            Set it for random pipelines; leave it off for deterministic ones so evaluation does
            not consume random numbers.
        rank: Global rank of the process, mixed into every augmentation seed.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path | None]],
        transform: A.BaseCompose | None = None,
        label_mapping: Callable[[np.ndarray], np.ndarray] | None = None,
        seed_from_torch: bool = False,
        rank: int = 0,
    ) -> None:
        """Store the pairs (as strings) and the pipeline (see the class docstring)."""
        self.pairs: list[Pair] = [
            (str(image), None if label is None else str(label)) for image, label in pairs
        ]
        self.transform = transform
        self.label_mapping = label_mapping
        self.seed_from_torch = seed_from_torch
        self.rank = rank

    def __len__(self) -> int:
        """Number of pairs."""
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Read, map and transform pair ``index`` (see the class docstring for the format)."""
        # A later `skip_invalid` mode catches InvalidSampleError from `load` here.
        image, label = self.load(index)
        if self.seed_from_torch and self.transform is not None and get_worker_info() is None:
            self.reseed(int(torch.randint(2**32, ()).item()))
        item: dict[str, torch.Tensor | str] = {"name": Path(self.pairs[index][0]).stem}
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

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Read pair ``index``: RGB uint8 image ``(H, W, 3)`` and mapped label ``(H, W)`` or None.

        Raises:
            InvalidSampleError: Naming the file, if a file is missing or unreadable, the label is
                not single-channel after mapping, or image and label sizes differ.
        """
        image_path, label_path = self.pairs[index]
        image = cv2.imread(image_path, cv2.IMREAD_COLOR)
        if image is None:
            raise InvalidSampleError(f"cannot read image '{image_path}'{_why(image_path)}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if label_path is None:
            return image, None
        label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
        if label is None:
            raise InvalidSampleError(f"cannot read label '{label_path}'{_why(label_path)}")
        if self.label_mapping is not None:
            try:
                label = self.label_mapping(label)
            except (IndexError, ValueError) as err:
                raise InvalidSampleError(
                    f"cannot map label values of '{label_path}': {err}"
                ) from err
        if label.ndim != 2:
            raise InvalidSampleError(
                f"label '{label_path}' has shape {label.shape}; expected one channel of label ids"
            )
        if label.shape != image.shape[:2]:
            raise InvalidSampleError(
                f"label '{label_path}' is {label.shape}, image '{image_path}' is {image.shape[:2]}"
            )
        return image, label


def _why(path: str) -> str:
    return "" if Path(path).is_file() else " (no such file)"


class SegmentationDataModule(L.LightningDataModule, ABC):
    """Splits, search-mode halves and loaders shared by every segmentation dataset.

    Subclasses set the class attributes below, implement :meth:`list_pairs` and declare a typed
    ``__init__`` whose defaults are the dataset's protocol (crop size, scale range).

    Loaders and batches:

    * ``train_dataloader()``: shuffled, ``drop_last`` when the set is larger than a batch, random
      scale / pad / crop / flip. In search mode (``search=True``) the training split is divided
      into disjoint halves trainA / trainB by :func:`split_indices` (``search_split_seed``, same
      on every DDP rank) and the method returns ``{"weights": loader(trainA), "arch":
      loader(trainB)}``; Lightning's CombinedLoader (``max_size_cycle``) then yields
      ``{"weights": batch, "arch": batch}`` per step.
    * ``val_dataloader()``: the val split, full images, only normalised.
    * ``test_dataloader()``: ``test_split`` if the dataset has a labelled one, else val.
    * ``predict_dataloader()``: the val images.

    A batch is ``{"image": FloatTensor (N, 3, H, W), "mask": LongTensor (N, H, W), "name":
    list[str]}`` with ``ignore_index`` (255) in the mask where there is no label.

    Determinism: with ``persistent_workers=False`` (default), ``torch.manual_seed(k)`` in
    ``on_train_epoch_start`` fixes the order and the augmentations of that epoch, for any
    ``num_workers``, also in the first epoch after resuming from a checkpoint: loaders create
    their iterator at the first batch (see ``_DeferredDataLoader``), and augmentation seeds come
    from torch's global generator (per item without workers, per worker with them; see
    :class:`SegmentationDataset` and :func:`seed_worker`), mixed with the DDP rank. Under DDP
    Lightning's ``DistributedSampler`` decides the order (from its own seed and the epoch).

    Args:
        root: Dataset root folder.
        batch_size: Training batch size (per process under DDP; per half in search mode).
        num_workers: DataLoader worker processes.
        pin_memory: Pin batches in page-locked memory.
        persistent_workers: Keep workers between epochs (only used when ``num_workers > 0``).
            Workers are then not reseeded each epoch, so epochs are no longer fixed by
            ``torch.manual_seed`` at epoch start.
        search: Search mode: training loader pairs trainA (weights) with trainB (architecture).
        search_split_seed: Seed of the trainA / trainB split.
        crop_size: Training crop ``(height, width)`` or an int; ``None`` for no crop.
        scale_range: Range of the random training scale factor; ``(1.0, 1.0)`` disables it.
        hflip: Random horizontal flips in training.
        eval_batch_size: Batch size of val / test / predict loaders (``None``: ``batch_size``).
            Use 1 when a dataset's images differ in size.

    Raises:
        ValueError: On a non-positive batch size, negative ``num_workers`` or bad scale range.
    """

    #: Class names, in train-id order.
    CLASS_NAMES: ClassVar[tuple[str, ...]] = ()
    #: RGB colour of each class, for visualisation.
    PALETTE: ClassVar[tuple[tuple[int, int, int], ...]] = ()
    #: Mask value of pixels that count neither in the loss nor in the metric.
    ignore_index: ClassVar[int] = 255
    #: Raw label value -> train id, or ``None`` when labels already are train ids.
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

    def __init__(
        self,
        root: str,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        search: bool = False,
        search_split_seed: int = 0,
        crop_size: int | tuple[int, int] | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
        eval_batch_size: int | None = None,
    ) -> None:
        """Validate and store the arguments (see the class docstring)."""
        super().__init__()
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ConfigError(f"batch sizes must be >= 1, got {batch_size} / {eval_batch_size}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ConfigError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
        self.save_hyperparameters()
        self.root = root
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.search = search
        self.search_split_seed = search_split_seed
        self.crop_size = crop_size
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.hflip = hflip
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self._pairs_cache: dict[str, list[Pair]] = {}

    # --- what a dataset says ----------------------------------------------------------------

    @abstractmethod
    def list_pairs(self, split: str) -> list[tuple[Path, Path | None]]:
        """The ``(image_path, label_path)`` pairs of ``split``, in a fixed order.

        Use :meth:`require_dir` on the folders so that a missing one raises a clear error.
        """

    def label_mapping(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Picklable callable mapping raw labels to train ids (default: from ``label_lut``)."""
        return None if self.label_lut is None else LabelLUT(self.label_lut)

    def train_transform(self) -> A.Compose:
        """The training pipeline, from ``crop_size``, ``scale_range`` and ``hflip``."""
        return train_transform(
            self.crop_size, self.scale_range, self.hflip, self.mean, self.std, self.ignore_index
        )

    def eval_transform(self) -> A.Compose:
        """The evaluation pipeline (normalisation only)."""
        return eval_transform(self.mean, self.std)

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
        """The pairs of ``split`` (listed once, then cached)."""
        if split not in self._pairs_cache:
            self.require_dir(self.root)
            listed = self.list_pairs(split)
            if not listed:
                raise FileNotFoundError(
                    f"{type(self).__name__}: split '{split}' under '{self.root}' is empty"
                )
            self._pairs_cache[split] = [
                (str(i), None if lb is None else str(lb)) for i, lb in listed
            ]
        return self._pairs_cache[split]

    def search_split(self) -> tuple[list[int], list[int]]:
        """Indices into the training pairs of trainA (weights) and trainB (architecture)."""
        return split_indices(len(self.pairs(self.train_split)), self.search_split_seed)

    def setup(self, stage: str | None = None) -> None:
        """List (and check) the splits the stage needs; datasets are built by the loaders."""
        if stage in ("fit", None):
            self.pairs(self.train_split)
        if stage in ("fit", "validate", "predict", None):
            self.pairs(self.val_split)
        if stage in ("test", None):
            self.pairs(self.test_split or self.val_split)

    # --- loaders ----------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """One shuffled loader, or ``{"weights": trainA, "arch": trainB}`` in search mode."""
        pairs = self.pairs(self.train_split)
        if not self.search:
            return self._loader(pairs, train=True)
        first, second = self.search_split()
        return {
            "weights": self._loader([pairs[i] for i in first], train=True),
            "arch": self._loader([pairs[i] for i in second], train=True),
        }

    def val_dataloader(self) -> DataLoader:
        """The val split at full resolution."""
        return self._loader(self.pairs(self.val_split), train=False)

    def test_dataloader(self) -> DataLoader:
        """The labelled test split if the dataset has one, else val."""
        return self._loader(self.pairs(self.test_split or self.val_split), train=False)

    def predict_dataloader(self) -> DataLoader:
        """The val images."""
        return self._loader(self.pairs(self.val_split), train=False)

    def _loader(self, pairs: list[Pair], train: bool) -> DataLoader:
        dataset = self.dataset_class(
            pairs,
            transform=self.train_transform() if train else self.eval_transform(),
            label_mapping=self.label_mapping(),
            seed_from_torch=train,
            rank=0 if self.trainer is None else self.trainer.global_rank,
        )
        batch_size = self.batch_size if train else self.eval_batch_size
        workers = self.num_workers > 0
        return _DeferredDataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers,
            worker_init_fn=seed_worker if workers else None,
        )


class _DeferredDataLoader(DataLoader):
    """A DataLoader that creates its real iterator when the first batch is requested.

    Creating a DataLoader iterator reads torch's global generator (the workers' base seed; with
    workers also the shuffle order, prefetched at once). Lightning creates the iterator of the
    first epoch of a run, fresh or resumed, before ``on_train_epoch_start`` and those of later
    epochs after it. Deferring the creation to the first ``next()`` makes every epoch depend on
    the global generator as it is when its first batch is drawn, which comes after that hook in
    every case, so reseeding there fixes the epoch whatever ``num_workers`` is.
    """

    def __iter__(self) -> _DeferredIterator:
        return _DeferredIterator(partial(DataLoader.__iter__, self))


class _DeferredIterator:
    def __init__(self, make: Callable[[], Iterator]) -> None:
        self._make: Callable[[], Iterator] | None = make
        self._iterator: Iterator | None = None

    def __iter__(self) -> _DeferredIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator, self._make = self._make(), None
        return next(self._iterator)
