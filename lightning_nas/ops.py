"""Candidate operations shared by every search space and derived network.

The DARTS operations follow ``quark0/darts:cnn/operations.py`` exactly (same layer order, same
padding, ``count_include_pad=False`` for average pooling). One deliberate extension:
:class:`FactorizedReduce` also accepts odd spatial sizes (see its docstring), so that every
stride-2 operation maps ``H`` to ``ceil(H / 2)``, as strided 3×3 convolutions and pools do.

Example:
    >>> import torch
    >>> from lightning_nas.ops import make_op
    >>> op = make_op("sep_conv_3x3", C=4, stride=2)
    >>> tuple(op(torch.randn(2, 4, 9, 9)).shape)
    (2, 4, 5, 5)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AUTODEEPLAB_PRIMITIVES",
    "AtrousConv",
    "DARTS_PRIMITIVES",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "drop_path",
    "make_autodeeplab_op",
    "make_op",
]

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The eight DARTS candidate operations, in the order of the architecture-parameter columns."""

AUTODEEPLAB_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "atrous_conv_3x3",
    "atrous_conv_5x5",
)
"""Auto-DeepLab's eight operators (paper §3.1), in α-column order. ``sep_conv_KxK`` is the
official release's ``separable_KxK_2`` (two ReLU–depthwise–pointwise–BN layers, the same layers as
DARTS' SepConv) and ``atrous_conv_KxK`` its ``atrous_KxK`` (a *full* K×K conv with rate 2)."""


class ReLUConvBN(nn.Module):
    """ReLU → Conv (no bias) → BatchNorm.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        kernel_size: Convolution kernel size.
        stride: Convolution stride.
        padding: Convolution padding.
        affine: Whether BatchNorm has learnable scale and shift.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.op(x)


class DilConv(nn.Module):
    """ReLU → dilated depthwise conv → pointwise 1×1 conv → BatchNorm.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride.
        padding: Depthwise padding.
        dilation: Depthwise dilation.
        affine: Whether BatchNorm has learnable scale and shift.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.op(x)


class AtrousConv(nn.Module):
    """ReLU → full (non-separable) K×K convolution with rate ``dilation`` → BatchNorm.

    Auto-DeepLab's ``atrous_KxK`` as the official release defines it. With stride 2 it becomes a
    bilinear resize to half size followed by the K×K convolution at rate 1, as the release does.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        kernel_size: K.
        stride: 1, or 2 (resize ÷2, then rate 1).
        dilation: Rate at stride 1.
        affine: Whether BatchNorm has learnable scale and shift.

    Example:
        >>> op = AtrousConv(4, 4, 3, stride=2)
        >>> tuple(op(torch.randn(1, 4, 9, 9)).shape)
        (1, 4, 5, 5)
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 2,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"AtrousConv: stride must be 1 or 2, got {stride}")
        self.stride = stride
        rate = 1 if stride == 2 else dilation
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_out,
                kernel_size,
                padding=rate * (kernel_size - 1) // 2,
                dilation=rate,
                bias=False,
            ),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        if self.stride == 2:
            size = ((x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked separable convs: [ReLU, dw k×k (stride), pw 1×1, BN], then again at stride 1.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        kernel_size: Depthwise kernel size.
        stride: Stride of the first depthwise conv.
        padding: Depthwise padding.
        affine: Whether BatchNorm has learnable scale and shift.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in, bias=False
            ),
            nn.Conv2d(C_in, C_in, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.op(x)


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


class FactorizedReduce(nn.Module):
    """Halve the size: ReLU → two 1×1 stride-2 convs (second shifted one pixel) → concat → BN.

    As in DARTS, the second branch sees ``x[:, :, 1:, 1:]``. Here that shifted input is first
    zero-padded by one row and one column at the bottom/right, so both branches give
    ``ceil(H / 2) × ceil(W / 2)`` on odd sizes too. On even sizes the padded row and column are
    never sampled by the stride-2 1×1 conv, so the result is identical to DARTS.

    Args:
        C_in: Input channels.
        C_out: Output channels; must be even (each branch gives ``C_out // 2``).
        affine: Whether BatchNorm has learnable scale and shift.

    Raises:
        ValueError: If ``C_out`` is odd.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2 != 0:
            raise ValueError(f"FactorizedReduce: C_out must be even, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the reduction."""
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        out = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)
        return self.bn(out)


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


_OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
}


def make_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    """Build the candidate operation ``name`` with ``C`` input and output channels.

    Pooling ops come bare, as in DARTS ``OPS``; the search network appends a
    ``BatchNorm2d(C, affine=False)`` after them itself.

    Args:
        name: One of :data:`DARTS_PRIMITIVES`.
        C: Input and output channels.
        stride: 1, or 2 for the input edges of a reduction cell.
        affine: Whether BatchNorm layers have learnable scale and shift (``False`` in the
            search network, ``True`` in derived networks).

    Returns:
        The operation; it maps ``(N, C, H, W)`` to ``(N, C, ceil(H / stride), ceil(W / stride))``.

    Raises:
        ValueError: If ``name`` is unknown or ``stride`` is not 1 or 2.
    """
    if name not in _OPS:
        raise ValueError(f"unknown op {name!r}; expected one of {', '.join(DARTS_PRIMITIVES)}")
    if stride not in (1, 2):
        raise ValueError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return _OPS[name](C, stride, affine)


_ADL_OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    **{k: v for k, v in _OPS.items() if not k.startswith("dil_conv")},
    "atrous_conv_3x3": lambda C, stride, affine: AtrousConv(C, C, 3, stride, 2, affine=affine),
    "atrous_conv_5x5": lambda C, stride, affine: AtrousConv(C, C, 5, stride, 2, affine=affine),
}


def make_autodeeplab_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    """Build the Auto-DeepLab operator ``name`` (one of :data:`AUTODEEPLAB_PRIMITIVES`).

    Same conventions as :func:`make_op` (pools come bare; ``C`` in and out channels).

    Raises:
        ValueError: If ``name`` is unknown or ``stride`` is not 1 or 2.
    """
    if name not in _ADL_OPS:
        raise ValueError(
            f"unknown op {name!r}; expected one of {', '.join(AUTODEEPLAB_PRIMITIVES)}"
        )
    if stride not in (1, 2):
        raise ValueError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return _ADL_OPS[name](C, stride, affine)


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
