"""Colours for label maps: the PASCAL VOC colour map and colourised overlays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bitwise_palette", "colorize", "overlay"]


def bitwise_palette(num: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: colour ``i`` spreads the bits of ``i`` over R, G and B.

    VOC's label PNGs carry this palette (index 255, the ignored border, is ``(224, 224, 192)``).

    Args:
        num: Number of colours (at most 256).

    Returns:
        ``num`` RGB triples.

    Example:
        >>> bitwise_palette(4)
        ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
        >>> bitwise_palette(256)[255]
        (224, 224, 192)
    """
    colours = []
    for i in range(num):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def colorize(
    label: np.ndarray,
    palette: Sequence[Sequence[int]],
    ignore_colour: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """RGB image ``(H, W, 3)`` uint8 of the train ids ``label`` (other values: ``ignore_colour``).

    Example:
        >>> colorize(np.array([[0, 1, 255]]), [(10, 20, 30), (40, 50, 60)]).tolist()
        [[[10, 20, 30], [40, 50, 60], [0, 0, 0]]]
    """
    table = np.tile(np.asarray(ignore_colour, np.uint8), (256, 1))
    table[: len(palette)] = np.asarray(palette, np.uint8)
    return table[np.clip(label, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend ``colours`` over ``image`` (both RGB uint8 of one size) with weight ``alpha``."""
    mixed = image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha
    return mixed.round().clip(0, 255).astype(np.uint8)
