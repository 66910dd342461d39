"""Convolution blocks shared by every method (each defined once).

The DARTS-family blocks follow ``quark0/darts:cnn/operations.py`` exactly (same layer order, same
padding). One deliberate extension: :class:`FactorizedReduce` also accepts odd spatial sizes (see
its docstring), so that every stride-2 block maps ``H`` to ``ceil(H / 2)``, as strided 3×3
convolutions and pools do.

Example:
    >>> import torch
    >>> from lightning_nas.ops import SepConv
    >>> op = SepConv(4, 4, 3, stride=2, padding=1)
    >>> tuple(op(torch.randn(2, 4, 9, 9)).shape)
    (2, 4, 5, 5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AtrousConv",
    "ConvNorm",
    "DilConv",
    "FactorizedReduce",
    "ReLUConvBN",
    "SepConv",
]


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


class ConvNorm(nn.Module):
    """Conv (no bias, padding ``k // 2``) → BN → ReLU, fixed widths.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        kernel_size: 1 or 3.
        stride: Stride.

    Raises:
        ValueError: If ``kernel_size`` is not 1 or 3.
    """

    def __init__(self, C_in: int, C_out: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise ValueError(f"ConvNorm: kernel_size must be 1 or 3, got {kernel_size}")
        self.conv = nn.Conv2d(
            C_in, C_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return F.relu(self.bn(self.conv(x)))
