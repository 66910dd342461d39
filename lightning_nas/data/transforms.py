"""Albumentations pipelines for semantic segmentation, and how to seed them.

The training pipeline follows the papers' protocol (random scale, pad, random crop, horizontal
flip, normalise); the evaluation pipeline only normalises, so that images are evaluated at full
resolution. Both can first resize every image so that its longer side has a given length
(``long_side``: half-resolution Cityscapes for the search, ADE20K at 513). Both are built with
``strict=True`` so that a misspelled or 1.x-style argument (``value`` / ``mask_value``) raises
instead of silently padding masks with class 0.
"""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from lightning_nas.errors import ConfigError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "seed_transform", "train_transform"]

#: Channel means of ImageNet (RGB, in [0, 1]), the default normalisation.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Channel standard deviations of ImageNet (RGB, in [0, 1]).
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ConfigError(f"crop size must be positive, got {size!r}")
    return int(height), int(width)


def train_transform(
    crop_size: int | tuple[int, int] | None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    ignore_index: int = 255,
    long_side: int | None = None,
) -> A.Compose:
    """(Resize) → random scale → pad → random crop → horizontal flip → normalise → tensor.

    Images are resized bilinearly and masks with nearest neighbour. The pad (needed when the
    scaled image is smaller than the crop) is filled with 0 in the image and with
    ``ignore_index`` in the mask, so padded pixels never count in the loss or the metric.

    Args:
        crop_size: Output size ``(height, width)`` (an int for a square). ``None`` skips pad and
            crop (only valid when all images of a batch end up the same size).
        scale_range: Range of the random scale factor, e.g. ``(0.5, 2.0)``. ``(1.0, 1.0)``
            leaves the scale step out.
        hflip: Flip horizontally with probability 0.5.
        mean: Normalisation mean per channel, in [0, 1].
        std: Normalisation standard deviation per channel, in [0, 1].
        ignore_index: Mask value of padded pixels.
        long_side: First resize the image so that its longer side has this length (``None``:
            keep the size).

    Returns:
        The pipeline; call it as ``pipeline(image=rgb_uint8, mask=label_uint8)``.

    Raises:
        ValueError: If ``scale_range`` or ``crop_size`` is not positive and ordered.

    Example:
        >>> import numpy as np
        >>> t = train_transform(crop_size=96, scale_range=(1.0, 1.0))
        >>> out = t(image=np.zeros((64, 64, 3), np.uint8), mask=np.zeros((64, 64), np.uint8))
        >>> tuple(out["image"].shape), int(out["mask"].max())
        ((3, 96, 96), 255)
    """
    low, high = scale_range
    if not 0 < low <= high:
        raise ConfigError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
    steps: list[A.BasicTransform] = _resize(long_side)
    if (low, high) != (1.0, 1.0):
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    if crop_size is not None:
        height, width = _pair(crop_size)
        steps += [
            A.PadIfNeeded(
                min_height=height,
                min_width=width,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
            ),
            A.RandomCrop(height=height, width=width),
        ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    steps += [A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps, strict=True)


def eval_transform(
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    long_side: int | None = None,
) -> A.Compose:
    """(Resize) → normalise → tensor, nothing random: evaluation on the whole image.

    Args:
        mean: Normalisation mean per channel, in [0, 1].
        std: Normalisation standard deviation per channel, in [0, 1].
        long_side: First resize the image (bilinear) and mask (nearest) so that the longer side
            has this length; ``None`` evaluates at full resolution.

    Returns:
        The pipeline.

    Example:
        >>> import numpy as np
        >>> t = eval_transform(long_side=32)
        >>> out = t(image=np.zeros((20, 40, 3), np.uint8), mask=np.zeros((20, 40), np.uint8))
        >>> tuple(out["image"].shape), tuple(out["mask"].shape)
        ((3, 16, 32), (16, 32))
    """
    steps = [*_resize(long_side), A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps, strict=True)


def _resize(long_side: int | None) -> list[A.BasicTransform]:
    if long_side is None:
        return []
    if long_side < 1:
        raise ConfigError(f"long_side must be a positive number of pixels, got {long_side!r}")
    return [
        A.LongestMaxSize(
            max_size=long_side,
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
        )
    ]


def seed_transform(transform: A.BaseCompose, seed: int) -> None:
    """Reseed an albumentations pipeline so that its next draws depend only on ``seed``.

    All steps share one NumPy and one Python generator seeded from ``seed``.
    ``Compose.set_random_seed`` is avoided on purpose: it gives every step its own generator
    with the *same* seed, so the steps' draws are correlated (in albumentations 2.0.8 the flip
    decision and the crop offset come from identical streams).

    Args:
        transform: The pipeline to reseed.
        seed: Any integer in ``[0, 2**32)``.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
