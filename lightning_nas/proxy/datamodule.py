"""CachedFeatureDataModule: batches of cached encoder features with their masks (the proxy task)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_nas._config import as_factory
from lightning_nas.data.base import SegmentationDataModule, SegmentationDataset
from lightning_nas.errors import ConfigError
from lightning_nas.proxy.cache import CachedFeatureDataset, FeatureCache

__all__ = ["CachedFeatureDataModule", "split_source"]


def split_source(
    datamodule: SegmentationDataModule, split: str
) -> tuple[SegmentationDataset, dict[str, Any]]:
    """A deterministic dataset of ``split`` and its description for the cache key.

    The dataset is the DataModule's ``dataset_class`` over the split's pairs with its
    *evaluation* pipeline (resize to ``long_side`` if set, normalise; no random scale, crop or
    flip), whatever the split: caching needs a fixed input. The description holds the
    DataModule class, the resolved root, the split, the pipeline's settings
    (``albumentations`` ``to_dict()``), a digest of the label mapping and a digest of every
    file's relative path, size and modification time (so re-rendered or edited data is never
    served from a stale cache; copying the dataset without keeping modification times means one
    rebuild).

    Args:
        datamodule: The source DataModule; its data must be on disk (``prepare_data``).
        split: Split name passed to ``datamodule.pairs``, e.g. ``datamodule.train_split``.

    Returns:
        ``(dataset, description)`` for :meth:`FeatureCache.build`.
    """
    pairs = datamodule.pairs(split)
    transform = datamodule.eval_transform()
    mapping = datamodule.label_mapping()
    dataset = datamodule.dataset_class(
        pairs,
        transform=transform,
        label_mapping=mapping,
        skip_invalid=datamodule.skip_invalid,
    )
    root = Path(datamodule.root).resolve()
    cls = type(datamodule)
    try:
        pipeline: Any = transform.to_dict()
    except (NotImplementedError, TypeError, ValueError):  # a step albumentations cannot save
        pipeline = repr(transform)
    return dataset, {
        "datamodule": f"{cls.__module__}.{cls.__qualname__}",
        "root": str(root),
        "split": split,
        "transform": pipeline,
        "label_mapping": _mapping_digest(mapping),
        "skip_invalid": datamodule.skip_invalid,
        "files": _files_digest([p for pair in pairs for p in pair if p is not None], root),
    }


class CachedFeatureDataModule(L.LightningDataModule):
    """Features of a frozen encoder, cached once per split, with the masks (DPC's proxy task).

    ``prepare_data`` (local rank 0) prepares the source DataModule and builds the caches of its
    train and val splits (and of its labelled test split, if any) with a
    :class:`~lightning_nas.proxy.cache.FeatureCache`, reusing valid ones; ``setup`` opens them
    memory-mapped on every process. Samples are read with the source's evaluation pipeline
    (:func:`split_source`), so there is no augmentation: the proxy trains on one fixed view of
    every training image (optionally a fixed center crop, ``crop_size``).

    A batch is ``{"image": FloatTensor (N, C, h, w), "mask": LongTensor (N, H, W)}``: the
    features stand in for the image, the masks keep the input size, so a
    :class:`~lightning_nas.proxy.module.ProxySegmentationModule` (logits resized to the mask)
    trains on it as a :class:`~lightning_nas.segmentation.SegmentationModule` does on images.
    In search mode (the source's ``search: true``) ``train_dataloader`` returns ``{"weights":
    trainA, "arch": trainB}`` from the source's split of the training samples.

    Args:
        source: The DataModule whose data is encoded, or its ``class_path`` / ``init_args``
            mapping (as in YAML); its ``num_workers`` read the images while building.
        encoder: The frozen encoder mapping images to one feature ``(N, C, h, w)``, e.g.
            :class:`~lightning_nas.proxy.cache.SmpEncoderFeature`, or its ``class_path`` /
            ``init_args`` mapping.
        cache_root: Folder of the cache directories.
        crop_size: Fixed center crop of every sample before encoding; ``None``: whole images
            (they must then all have one size, e.g. Cityscapes, or set the source's
            ``long_side``).
        batch_size: Training batch size; ``None``: the source's ``batch_size``.
        eval_batch_size: Val / test batch size; ``None``: the source's ``eval_batch_size``.
        num_workers: Workers reading the cached features.
        pin_memory: Pin feature batches in page-locked memory.
        encode_batch_size: Images per encoder call while building.
        device: Where the encoder runs while building; ``None``: the trainer's device, else
            CUDA if available, else CPU.
        progress: Show a progress bar while building.
        verify_checksum: Re-hash reused caches against their manifest (reads them whole).

    Example:
        >>> import shutil, tempfile
        >>> from lightning_nas.data import SyntheticDataModule
        >>> torch.manual_seed(0) and None
        >>> tmp = tempfile.mkdtemp()
        >>> source = SyntheticDataModule(root=f"{tmp}/data", num_train=4, num_val=2,
        ...                              image_size=32, batch_size=2)
        >>> encoder = nn.Conv2d(3, 8, kernel_size=8, stride=8)
        >>> dm = CachedFeatureDataModule(source, encoder, f"{tmp}/cache", progress=False)
        >>> dm.prepare_data()
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), tuple(batch["mask"].shape), dm.feature_channels
        ((2, 8, 4, 4), (2, 32, 32), 8)
        >>> shutil.rmtree(tmp)
    """

    def __init__(
        self,
        source: SegmentationDataModule,
        encoder: nn.Module,
        cache_root: str = "cache/features",
        crop_size: int | tuple[int, int] | None = None,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        encode_batch_size: int = 8,
        device: str | None = None,
        progress: bool = True,
        verify_checksum: bool = False,
    ) -> None:
        super().__init__()
        source = _instance(source, SegmentationDataModule, "data.init_args.source")
        encoder = _instance(encoder, nn.Module, "data.init_args.encoder")
        batch_size = source.batch_size if batch_size is None else batch_size
        eval_batch_size = source.eval_batch_size if eval_batch_size is None else eval_batch_size
        if batch_size < 1 or eval_batch_size < 1 or num_workers < 0:
            raise ConfigError(
                f"CachedFeatureDataModule: need batch sizes >= 1 and num_workers >= 0, got "
                f"{batch_size} / {eval_batch_size}, {num_workers}"
            )
        self.source = source
        self.encoder = encoder
        self.cache = FeatureCache(
            encoder,
            cache_root,
            crop_size=crop_size,
            ignore_index=source.ignore_index,
            batch_size=encode_batch_size,
            num_workers=source.num_workers,
            device=device,
            progress=progress,
            verify_checksum=verify_checksum,
        )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.splits: dict[str, CachedFeatureDataset] = {}

    @property
    def num_classes(self) -> int:
        """Number of classes of the source."""
        return self.source.num_classes

    @property
    def ignore_index(self) -> int:
        """Mask value of unlabelled pixels."""
        return self.source.ignore_index

    @property
    def class_names(self) -> list[str]:
        """Class names of the source."""
        return self.source.class_names

    @property
    def feature_channels(self) -> int:
        """Channels ``C`` of the features (input channels of a head on them).

        From an opened cache, else the encoder's integer ``out_channels``, else one forward
        pass of a blank image through the encoder.
        """
        for split in self.splits.values():
            return split.feature_channels
        channels = getattr(self.encoder, "out_channels", None)
        if isinstance(channels, int):
            return channels
        side = self.cache.crop_size or (64, 64)
        was_training = self.encoder.training
        try:
            with torch.inference_mode():
                out = self.encoder.eval()(torch.zeros(1, 3, *side))
        finally:
            self.encoder.train(was_training)
        return int((out[-1] if isinstance(out, (list, tuple)) else out).shape[1])

    def _cached_splits(self) -> list[str]:
        source = self.source
        names = [source.train_split, source.val_split, source.test_split]
        return list(dict.fromkeys(name for name in names if name is not None))

    def prepare_data(self) -> None:
        """Prepare the source and build (or reuse) the caches of its labelled splits."""
        self.source.prepare_data()
        default = self.cache.device
        if default is None and self.trainer is not None:
            self.cache.device = self.trainer.strategy.root_device
        try:
            for split in self._cached_splits():
                self.cache.build(*split_source(self.source, split))
        finally:
            self.cache.device = default

    def setup(self, stage: str | None = None) -> None:
        """Open the caches the stage needs (built by :meth:`prepare_data`)."""
        source = self.source
        needed = {
            "fit": [source.train_split, source.val_split],
            "validate": [source.val_split],
            "test": [source.test_split or source.val_split],
        }.get(stage or "", self._cached_splits())
        for split in needed:
            if split not in self.splits:
                self.splits[split] = self.cache.open(*split_source(source, split))

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """Shuffled training features, or ``{"weights": trainA, "arch": trainB}`` in search mode."""
        train = self._split(self.source.train_split)
        if not self.source.search:
            return self._loader(train, train=True)
        first, second = self.source.search_split()
        return {
            "weights": self._loader(Subset(train, first), train=True),
            "arch": self._loader(Subset(train, second), train=True),
        }

    def val_dataloader(self) -> DataLoader:
        """The val split's features."""
        return self._loader(self._split(self.source.val_split), train=False)

    def test_dataloader(self) -> DataLoader:
        """The labelled test split's features if the source has one, else val."""
        split = self.source.test_split or self.source.val_split
        return self._loader(self._split(split), train=False)

    def _split(self, split: str) -> CachedFeatureDataset:
        if split not in self.splits:
            raise RuntimeError(
                f"CachedFeatureDataModule: split '{split}' is not open; call setup() first"
            )
        return self.splits[split]

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        batch_size = self.batch_size if train else self.eval_batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > batch_size,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )


def _instance(value: Any, base: type, key: str) -> Any:
    """``value``, built first when it is a ``class_path`` / ``init_args`` mapping."""
    if isinstance(value, Mapping):
        value = as_factory(value, key)()
    if not isinstance(value, base):
        raise ConfigError(f"{key}: expected a {base.__name__}, got {type(value).__name__}")
    return value


def _mapping_digest(mapping: Callable[[np.ndarray], np.ndarray] | None) -> str | None:
    if mapping is None:
        return None
    cls = type(mapping)
    lut = getattr(mapping, "lut", None)
    content = np.asarray(lut).tobytes() if lut is not None else repr(mapping).encode()
    return f"{cls.__module__}.{cls.__qualname__}:{hashlib.sha256(content).hexdigest()[:16]}"


def _files_digest(paths: list[str], root: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        resolved = Path(path).resolve()
        name = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
        digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
