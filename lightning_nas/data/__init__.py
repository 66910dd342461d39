"""LightningDataModules for semantic segmentation: one per dataset, over a shared base."""

from lightning_nas.data.ade20k import ADE20KDataModule
from lightning_nas.data.base import (
    InvalidSampleError,
    LabelLUT,
    SegmentationDataModule,
    SegmentationDataset,
    SkippedSamplesWarning,
    existing_pairs,
    identity_lut,
    match_pairs,
    seed_worker,
    split_indices,
)
from lightning_nas.data.cityscapes import CityscapesDataModule
from lightning_nas.data.evaluation import multiscale_flip_logits, sliding_window_logits
from lightning_nas.data.synthetic import SyntheticDataModule
from lightning_nas.data.transforms import eval_transform, seed_transform, train_transform
from lightning_nas.data.voc import VOCDataModule

__all__ = [
    "ADE20KDataModule",
    "CityscapesDataModule",
    "InvalidSampleError",
    "LabelLUT",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SkippedSamplesWarning",
    "SyntheticDataModule",
    "VOCDataModule",
    "eval_transform",
    "existing_pairs",
    "identity_lut",
    "match_pairs",
    "multiscale_flip_logits",
    "seed_transform",
    "seed_worker",
    "sliding_window_logits",
    "split_indices",
    "train_transform",
]
