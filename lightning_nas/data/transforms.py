"""Albumentations pipelines for semantic segmentation, and how to seed them.

The training pipeline follows the papers' protocol (random scale, random crop, normalise, pad,
horizontal flip); the evaluation pipeline only normalises, so that images are evaluated at full
resolution. Both can first resize every image so that its longer side has a given length
(``long_side``: half-resolution Cityscapes for the search, ADE20K at 513). Both are built with
``strict=True`` so that a misspelled or 1.x-style argument (``value`` / ``mask_value``) raises
instead of silently padding masks with class 0.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.crops import functional as fcrops
from albumentations.pytorch import ToTensorV2

from lightning_nas.errors import ConfigError

__all__ = [
    "DEFAULT_SCALE_RANGE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RandomCropUpTo",
    "RandomScaleChoice",
    "check_scales",
    "eval_transform",
    "seed_transform",
    "train_transform",
]

#: Channel means of ImageNet (RGB, in [0, 1]), the default normalisation.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Channel standard deviations of ImageNet (RGB, in [0, 1]).
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Random scale range used when neither ``scale_range`` nor ``scales`` is given (DeepLab).
DEFAULT_SCALE_RANGE: tuple[float, float] = (0.5, 2.0)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ConfigError(f"crop size must be positive, got {size!r}")
    return int(height), int(width)


def check_scales(
    scale_range: Sequence[float] | None, scales: Sequence[float] | None
) -> tuple[tuple[float, float] | None, tuple[float, ...] | None]:
    """Validate the two mutually exclusive ways of giving the random training scale.

    Args:
        scale_range: ``(low, high)`` of a continuous uniform scale factor, or ``None``.
        scales: Scale factors to choose from uniformly (FasterSeg's ``[0.75, 1, 1.25]``), or
            ``None``.

    Returns:
        ``(scale_range, scales)`` as tuples of floats (``None`` stays ``None``).

    Raises:
        ConfigError: If both are given, if ``scale_range`` is not ``0 < low <= high`` or if
            ``scales`` is empty or holds a non-positive (or non-finite) factor.

    Example:
        >>> check_scales(None, [0.75, 1, 1.25])
        (None, (0.75, 1.0, 1.25))
    """
    if scale_range is not None and scales is not None:
        raise ConfigError(
            f"scale_range and scales are mutually exclusive, got scale_range="
            f"{list(scale_range)} and scales={list(scales)}: set one of them and leave the "
            "other null"
        )
    if scale_range is not None:
        if (
            len(scale_range) != 2
            or not 0 < scale_range[0] <= scale_range[1]
            or not math.isfinite(scale_range[1])
        ):
            raise ConfigError(
                f"scale_range must be [low, high] with 0 < low <= high, got {scale_range!r}"
            )
        scale_range = (float(scale_range[0]), float(scale_range[1]))
    if scales is not None:
        if len(scales) == 0 or not all(math.isfinite(x) and x > 0 for x in scales):
            raise ConfigError(
                f"scales must be a non-empty list of positive scale factors, e.g. "
                f"[0.75, 1.0, 1.25], got {scales!r}"
            )
        scales = tuple(float(x) for x in scales)
    return scale_range, scales


def train_transform(
    crop_size: int | tuple[int, int] | None,
    scale_range: tuple[float, float] | None = None,
    hflip: bool = True,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    ignore_index: int = 255,
    long_side: int | None = None,
    scales: Sequence[float] | None = None,
    pad_position: Literal["top_left", "center"] = "top_left",
) -> A.Compose:
    """(Resize) → random scale → random crop → normalise → pad → horizontal flip → tensor.

    Images are resized bilinearly and masks with nearest neighbour, both sides by the same
    factor, the new size truncated (``int(h * s)``, ``int(w * s)``) as in the FasterSeg release.
    The crop takes at most ``crop_size`` (the whole side where the scaled image is smaller);
    the image is normalised and only *then* padded to ``crop_size``, with 0 in the image (the
    mean colour after normalisation, as DeepLab's mean-pixel pad and FasterSeg's
    normalise-then-pad) and ``ignore_index`` in the mask, so padded pixels never count in the
    loss or the metric. Cropping before normalising keeps the cost of normalising to the crop;
    cropping at most the crop size and then padding gives the same crops as padding first and
    then cropping.

    Args:
        crop_size: Output size ``(height, width)`` (an int for a square). ``None`` skips crop and
            pad (only valid when all images of a batch end up the same size).
        scale_range: Range of a continuous uniform random scale factor, e.g. ``(0.5, 2.0)``
            (DeepLab). ``(1.0, 1.0)`` leaves the scale step out. ``None`` (and no ``scales``):
            :data:`DEFAULT_SCALE_RANGE`.
        hflip: Flip horizontally with probability 0.5.
        mean: Normalisation mean per channel, in [0, 1].
        std: Normalisation standard deviation per channel, in [0, 1].
        ignore_index: Mask value of padded pixels.
        long_side: First resize the image so that its longer side has this length (``None``:
            keep the size).
        scales: Instead of ``scale_range``, scale factors drawn with equal probability, e.g.
            ``(0.75, 1.0, 1.25)`` (FasterSeg's ``train_scale_array``).
        pad_position: Where the image sits in the padded crop: ``"top_left"`` pads at the
            bottom / right (DeepLab's ``pad_to_bounding_box`` at offset 0); ``"center"`` splits
            the pad (the FasterSeg / TorchSeg release, one extra row / column at the bottom /
            right).

    Returns:
        The pipeline; call it as ``pipeline(image=rgb_uint8, mask=label_uint8)``.

    Raises:
        ConfigError: If ``scale_range``, ``scales`` or ``crop_size`` is invalid, or if both
            ``scale_range`` and ``scales`` are given.

    Example:
        >>> import numpy as np
        >>> t = train_transform(crop_size=96, scale_range=(1.0, 1.0), hflip=False)
        >>> out = t(image=np.zeros((64, 64, 3), np.uint8), mask=np.zeros((64, 64), np.uint8))
        >>> tuple(out["image"].shape), int(out["mask"].max()), float(out["image"][0, 95, 95])
        ((3, 96, 96), 255, 0.0)
    """
    scale_range, scales = check_scales(scale_range, scales)
    if scale_range is None and scales is None:
        scale_range = DEFAULT_SCALE_RANGE
    if pad_position not in ("top_left", "center"):
        raise ConfigError(f"pad_position must be 'top_left' or 'center', got {pad_position!r}")
    steps: list[A.BasicTransform] = _resize(long_side)
    if scales is not None:
        if set(scales) != {1.0}:
            steps.append(RandomScaleChoice(scales))
    elif scale_range != (1.0, 1.0):
        low, high = scale_range
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    normalize = A.Normalize(mean=mean, std=std)
    if crop_size is None:
        steps.append(normalize)
    else:
        height, width = _pair(crop_size)
        steps += [
            RandomCropUpTo(height=height, width=width),
            normalize,
            A.PadIfNeeded(
                min_height=height,
                min_width=width,
                position=pad_position,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
            ),
        ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    steps.append(ToTensorV2())
    return A.Compose(steps, strict=True)


class RandomScaleChoice(A.RandomScale):
    """Scale image and mask by a factor drawn with equal probability from ``scales``.

    FasterSeg's ``random_scale`` (``random.choice(train_scale_array)``): the new size is
    ``int(h * s), int(w * s)``; bilinear for images, nearest for masks. Always applied.

    Args:
        scales: The scale factors (positive).
    """

    def __init__(self, scales: Sequence[float]) -> None:
        """Store the factors (see the class docstring)."""
        super().__init__(
            scale_limit=(0.0, 0.0),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=1.0,
        )
        self.scales = tuple(float(x) for x in scales)

    def get_params(self) -> dict[str, float]:
        """Draw the scale factor (one draw of the transform's Python generator)."""
        return {"scale": self.py_random.choice(self.scales)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments shown by ``repr`` and serialisation."""
        return ("scales",)


class RandomCropUpTo(A.RandomCrop):
    """A random crop of at most ``(height, width)``: sides shorter than the crop are kept whole.

    Followed by ``PadIfNeeded`` it gives the same crops as padding first and cropping after
    (offset 0 on a side that needed padding), but lets the image be normalised in between, on
    the crop only.

    Args:
        height: Crop height.
        width: Crop width.
    """

    def __init__(self, height: int, width: int) -> None:
        """Store the crop size (see the class docstring)."""
        super().__init__(height=height, width=width, pad_if_needed=False, p=1.0)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """Crop coordinates, clipped to the image (two draws, as ``RandomCrop``)."""
        h_start, w_start = self.py_random.random(), self.py_random.random()
        coords = fcrops.get_crop_coords(
            params["shape"][:2], (self.height, self.width), h_start, w_start
        )
        return {"crop_coords": coords, "pad_params": None}


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
