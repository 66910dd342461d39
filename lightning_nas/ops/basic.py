"""Parameter-free blocks and helpers shared by every method: identity, zero, drop-path, resize."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Add", "Concat", "Identity", "Resize", "Zero", "ceil_div", "drop_path", "resize"]


class Identity(nn.Module):
    """The identity (``skip_connect`` at stride 1); derived networks never drop-path it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` unchanged."""
        return x


class Zero(nn.Module):
    """The ``none`` operation: zeros, strided-sliced when ``stride > 1``.

    Args:
        stride: Spatial stride; the output has size ``ceil(H / stride)``.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return zeros of the strided shape (kept in the graph, as in DARTS)."""
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Add(nn.Module):
    """Elementwise sum of two tensors (a block of its own, for latency tables)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Return ``a + b``."""
        return a + b


class Concat(nn.Module):
    """Channel concatenation of any number of tensors (a block of its own, for latency tables)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Return ``cat(xs, dim=1)``."""
        return torch.cat(xs, dim=1)


def ceil_div(n: int, d: int) -> int:
    """``ceil(n / d)`` for integers: the size a stride-``d`` block gives (odd sizes included)."""
    return -(-n // d)


def resize(x: torch.Tensor, size: Sequence[int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to ``size`` with ``align_corners=True`` (FasterSeg's every resize)."""
    return F.interpolate(x, size=(size[0], size[1]), mode="bilinear", align_corners=True)


class Resize(nn.Module):
    """Bilinear resize to a fixed ``size`` (a block of its own, for latency tables).

    Args:
        size: Output ``(H, W)``.
        align_corners: As :func:`torch.nn.functional.interpolate`.
    """

    def __init__(self, size: tuple[int, int], align_corners: bool = False) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize ``x``."""
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Drop whole samples of ``x`` with probability ``drop_prob`` and rescale the rest.

    Unlike DARTS' ``utils.drop_path`` this is device-agnostic and returns a new tensor.

    Args:
        x: Tensor of shape ``(N, ...)``.
        drop_prob: Probability of zeroing each sample, in ``[0, 1)``.

    Returns:
        ``x * mask / (1 - drop_prob)`` with a per-sample Bernoulli mask.
    """
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep
