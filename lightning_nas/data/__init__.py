"""LightningDataModules for semantic segmentation: one per dataset, over a shared base."""

from lightning_nas.data.base import (
    InvalidSampleError,
    LabelLUT,
    SegmentationDataModule,
    SegmentationDataset,
    match_pairs,
    seed_worker,
    split_indices,
)
from lightning_nas.data.synthetic import SyntheticDataModule
from lightning_nas.data.transforms import eval_transform, seed_transform, train_transform

__all__ = [
    "InvalidSampleError",
    "LabelLUT",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
    "eval_transform",
    "match_pairs",
    "seed_transform",
    "seed_worker",
    "split_indices",
    "train_transform",
]
