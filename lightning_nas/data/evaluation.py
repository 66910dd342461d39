"""Whole-image evaluation helpers: sliding-window and multi-scale + flip inference.

Pure functions of a model (any callable ``(N, 3, h, w) -> (N, C, h', w')`` logits) and a
normalised image batch, for a LightningModule's ``validation_step`` / ``predict_step``::

    logits = multiscale_flip_logits(self, batch["image"], scales=(0.75, 1.0, 1.25), flip=True,
                                    window=(769, 769))
    prediction = logits.argmax(1)

Logits smaller than their input (a network without a final upsampling) are upsampled
bilinearly. Padding uses 0, which is the mean colour after normalisation (DeepLab pads
evaluation images with the mean pixel too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from lightning_nas.errors import ConfigError

__all__ = ["multiscale_flip_logits", "sliding_window_logits"]

Model = Callable[[torch.Tensor], torch.Tensor]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    h, w = (value, value) if isinstance(value, int) else tuple(value)
    if h < 1 or w < 1:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return int(h), int(w)


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``[0, size)``: every ``stride``, the last one flush with the end."""
    last = size - window
    return sorted({*range(0, last, stride), last})


def _forward(model: Model, image: torch.Tensor) -> torch.Tensor:
    logits = model(image)
    if logits.shape[-2:] != image.shape[-2:]:
        logits = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def sliding_window_logits(
    model: Model,
    image: torch.Tensor,
    window: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Logits of a whole image from overlapping ``window``-sized tiles, averaged where they overlap.

    The image is padded (bottom / right, with 0) to at least ``window``; tiles start every
    ``stride`` pixels and the last tile of each row / column is flush with the padded border, so
    every pixel is covered. The model only ever sees ``window``-sized inputs.

    Args:
        model: Callable returning logits ``(N, C, h, w)`` for an input ``(N, 3, h, w)``.
        image: Normalised batch ``(N, 3, H, W)``.
        window: Tile size ``(height, width)`` (an int for a square), e.g. the training crop.
        stride: Step between tiles; ``None``: two thirds of ``window`` (rounded up).
        num_classes: Expected number of logit channels (checked when given).

    Returns:
        Logits ``(N, C, H, W)``.

    Raises:
        ValueError: On a non-positive window / stride or a channel count other than
            ``num_classes``.

    Example:
        >>> conv = torch.nn.Conv2d(3, 4, 1)
        >>> image = torch.randn(2, 3, 50, 70)
        >>> out = sliding_window_logits(conv, image, window=32, stride=16)
        >>> tuple(out.shape), torch.allclose(out, conv(image), atol=1e-6)
        ((2, 4, 50, 70), True)
    """
    wh, ww = _pair(window, "window")
    if stride is None:
        stride = (math.ceil(wh * 2 / 3), math.ceil(ww * 2 / 3))
    sh, sw = _pair(stride, "stride")
    height, width = image.shape[-2:]
    padded = F.pad(image, (0, max(ww - width, 0), 0, max(wh - height, 0)))
    ph, pw = padded.shape[-2:]
    total: torch.Tensor | None = None
    count = torch.zeros((1, 1, ph, pw), dtype=image.dtype, device=image.device)
    for top in _starts(ph, wh, sh):
        for left in _starts(pw, ww, sw):
            logits = _forward(model, padded[..., top : top + wh, left : left + ww])
            if total is None:
                if num_classes is not None and logits.shape[1] != num_classes:
                    raise ConfigError(
                        f"model returned {logits.shape[1]} channels, expected {num_classes}"
                    )
                total = logits.new_zeros((image.shape[0], logits.shape[1], ph, pw))
            total[..., top : top + wh, left : left + ww] += logits
            count[..., top : top + wh, left : left + ww] += 1
    assert total is not None  # at least one tile
    return (total / count)[..., :height, :width]


def multiscale_flip_logits(
    model: Model,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    num_classes: int | None = None,
    softmax: bool = False,
) -> torch.Tensor:
    """Average of the model's outputs over rescaled (and horizontally flipped) copies of ``image``.

    Each scale ``s`` resizes the image bilinearly to ``round(s * H) × round(s * W)``, runs the
    model on it (tiled with :func:`sliding_window_logits` when ``window`` is given, else in one
    pass), resizes the logits back to ``H × W`` and adds them up; with ``flip`` the mirrored
    image is run too and its output mirrored back. ``scales=(1.0,), flip=False`` is the plain
    single-scale evaluation.

    Args:
        model: Callable returning logits for an input batch.
        image: Normalised batch ``(N, 3, H, W)``.
        scales: Scale factors, e.g. ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)`` (DeepLab / DPC).
        flip: Also evaluate the horizontally flipped image.
        window: Tile size for sliding-window inference at every scale (``None``: whole image).
        stride: Step between tiles (see :func:`sliding_window_logits`).
        num_classes: Expected number of channels (checked when given).
        softmax: Average softmax probabilities (DeepLab, mmseg) instead of logits.

    Returns:
        ``(N, C, H, W)``: the mean logits, or the mean probabilities with ``softmax=True``.
        Either way ``argmax(1)`` is the prediction.

    Raises:
        ValueError: On an empty or non-positive ``scales``.

    Example:
        >>> conv = torch.nn.Conv2d(3, 4, 1)
        >>> image = torch.randn(1, 3, 40, 60)
        >>> out = multiscale_flip_logits(conv, image, scales=(1.0,), flip=True)
        >>> torch.allclose(out, conv(image), atol=1e-6)
        True
    """
    if not scales or any(s <= 0 for s in scales):
        raise ConfigError(f"scales must be positive and non-empty, got {scales!r}")
    height, width = image.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        size = (max(round(height * scale), 1), max(round(width * scale), 1))
        scaled = (
            image
            if size == (height, width)
            else F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        )
        for mirrored in (False, True) if flip else (False,):
            x = scaled.flip(-1) if mirrored else scaled
            logits = (
                _forward(model, x)
                if window is None
                else sliding_window_logits(model, x, window, stride, num_classes)
            )
            if mirrored:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(
                    logits, size=(height, width), mode="bilinear", align_corners=False
                )
            if softmax:
                logits = logits.softmax(1)
            total = logits if total is None else total + logits
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))
