"""DPC's three branch operations, as the official TensorFlow release defines them.

Source: ``tensorflow/models``, ``research/deeplab/core/dense_prediction_cell.py`` @ ``52e2952``
(``build_cell``) and ``utils.py`` @ ``0f5c934`` (``split_separable_conv2d``,
``scale_dimension``). Every convolution has no bias and is followed by BatchNorm and ReLU (the
release's ``arg_scope``: ``normalizer_fn=slim.batch_norm``, ``activation_fn=tf.nn.relu``,
``padding='SAME'``). BatchNorm: TF decay 0.9997, i.e. PyTorch ``momentum = 1 - 0.9997 = 3e-4``
(:data:`BN_MOMENTUM`), ``eps = 1e-5``.

Pyramid pooling follows the release, not PSPNet's adaptive pooling: see :class:`PyramidPooling`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.ops import ConvNorm

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "Conv1x1BNReLU",
    "PyramidPooling",
    "SeparableAtrousConv",
    "make_dpc_op",
    "pool_kernel",
]

BN_MOMENTUM = 3e-4
"""PyTorch BatchNorm momentum of the release's ``decay = 0.9997`` (``momentum = 1 - decay``)."""

BN_EPS = 1e-5
"""BatchNorm epsilon of the release."""


def _bn(channels: int, momentum: float, eps: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


def _xavier(conv: nn.Conv2d) -> None:
    """Slim's default ``xavier_initializer()`` (Glorot uniform over fan-in + fan-out)."""
    nn.init.xavier_uniform_(conv.weight)


def _truncated_normal(conv: nn.Conv2d, std: float) -> None:
    """TF's ``truncated_normal_initializer(stddev)``: a normal cut at two standard deviations."""
    nn.init.trunc_normal_(conv.weight, std=std, a=-2 * std, b=2 * std)


class SeparableAtrousConv(nn.Module):
    """The release's ``split_separable_conv2d``: a 3×3 atrous separable conv with two BN + ReLU.

    Depthwise 3×3 at rate ``(r_h, r_w)`` with padding ``(r_h, r_w)`` (TF ``SAME``: the size is
    kept) → BN → ReLU → pointwise 1×1 to ``C_out`` → BN → ReLU. Weights are initialised as the
    release does: truncated normal with standard deviation 0.33 (depthwise) and 0.06
    (pointwise).

    Args:
        C_in: Input channels.
        C_out: Output channels.
        rate: The depthwise rates ``(r_h, r_w)`` (already multiplied by the rate multiplier).
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.

    Example:
        >>> op = SeparableAtrousConv(4, 8, rate=(1, 6))
        >>> tuple(op(torch.randn(2, 4, 9, 9)).shape)
        (2, 8, 9, 9)
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        rate: tuple[int, int],
        bn_momentum: float = BN_MOMENTUM,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.rate = tuple(rate)
        self.depthwise = nn.Conv2d(
            C_in, C_in, 3, padding=self.rate, dilation=self.rate, groups=C_in, bias=False
        )
        self.depthwise_bn = _bn(C_in, bn_momentum, bn_eps)
        self.pointwise = nn.Conv2d(C_in, C_out, 1, bias=False)
        self.pointwise_bn = _bn(C_out, bn_momentum, bn_eps)
        _truncated_normal(self.depthwise, 0.33)
        _truncated_normal(self.pointwise, 0.06)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; the spatial size is kept."""
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class Conv1x1BNReLU(ConvNorm):
    """The release's ``slim.conv2d(x, depth, 1)``: 1×1 conv (no bias) → BN → ReLU.

    The shared :class:`~lightning_nas.ops.ConvNorm` block with the release's BatchNorm
    settings and slim's default (Glorot uniform) initialisation.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.
    """

    def __init__(
        self, C_in: int, C_out: int, bn_momentum: float = BN_MOMENTUM, bn_eps: float = BN_EPS
    ) -> None:
        super().__init__(C_in, C_out, kernel_size=1)
        self.bn = _bn(C_out, bn_momentum, bn_eps)
        _xavier(self.conv)


def pool_kernel(feature_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """The average-pooling kernel of :class:`PyramidPooling` on a feature map of this size.

    The release computes ``kernel = int((crop - 1) / (OS · g) + 1)`` from the crop size and the
    feature size as ``f = int((crop - 1) / OS + 1)`` (``utils.scale_dimension``). Since
    ``floor(floor(x) / g) = floor(x / g)`` for a positive integer ``g``, the kernel is
    ``(f - 1) // g + 1`` exactly, for every crop size: the module needs only the feature size.
    For crop 769 at OS 16, ``f = 49`` and the kernels of ``g = 1, 2, 4, 8`` are 49, 25, 13, 7.

    Args:
        feature_size: ``(f_h, f_w)``.
        grid: ``(g_h, g_w)``.

    Returns:
        ``(k_h, k_w)``.

    Example:
        >>> [pool_kernel((49, 49), (g, g))[0] for g in (1, 2, 4, 8)]
        [49, 25, 13, 7]
    """
    (f_h, f_w), (g_h, g_w) = feature_size, grid
    return (f_h - 1) // g_h + 1, (f_w - 1) // g_w + 1


class PyramidPooling(nn.Module):
    """The release's ``pyramid_pooling`` branch (not ``AdaptiveAvgPool2d``).

    On a feature map of size ``(f_h, f_w)`` with grid ``(g_h, g_w)``: average pooling with kernel
    :func:`pool_kernel` ``= ((f_h - 1) // g_h + 1, (f_w - 1) // g_w + 1)``, stride 1 and VALID
    padding → 1×1 conv to ``C_out`` → BN → ReLU → bilinear resize (``align_corners=True``) back
    to ``(f_h, f_w)``. For ``g = 1`` this is image pooling (a 1×1 map); for ``g > 1`` the pooled
    map is ``f - k + 1`` wide (25, 37 and 43 for ``f = 49`` and ``g = 2, 4, 8``): a large stride-1
    box filter, as in the release.

    The release takes the kernel from the crop size (or ``image_pooling_crop_size``); here it
    follows the feature map the module sees, which is the release's default
    (``image_pooling_crop_size = crop_size``) at any input size.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        grid: ``(g_h, g_w)``.
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.

    Example:
        >>> op = PyramidPooling(4, 8, grid=(2, 4))
        >>> tuple(op(torch.randn(2, 4, 9, 9)).shape)
        (2, 8, 9, 9)
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        grid: tuple[int, int],
        bn_momentum: float = BN_MOMENTUM,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.conv = nn.Conv2d(C_in, C_out, 1, bias=False)
        self.bn = _bn(C_out, bn_momentum, bn_eps)
        _xavier(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool, project and resize back to the input's spatial size."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        pooled = F.avg_pool2d(x, pool_kernel(size, self.grid), stride=1, padding=0)
        y = F.relu(self.bn(self.conv(pooled)))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=True)


def make_dpc_op(
    op: str,
    args: tuple[int, int],
    C_in: int,
    C_out: int,
    rate_multiplier: int = 1,
    bn_momentum: float = BN_MOMENTUM,
    bn_eps: float = BN_EPS,
) -> nn.Module:
    """The module of one branch operation of a :class:`~lightning_nas.genotypes.DPCGenotype`.

    Args:
        op: ``conv1x1``, ``sep_conv3x3`` or ``pyramid_pooling``.
        args: Its ``(a, b)``: rates, grid, or ``(1, 1)``.
        C_in: Input channels.
        C_out: Output channels.
        rate_multiplier: Multiplies the rates of ``sep_conv3x3`` (the release's
            ``conv_rate_multiplier = 16 // output_stride``); pooling grids are not scaled.
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.

    Returns:
        The module.

    Raises:
        ValueError: If ``op`` is unknown.
    """
    if op == "conv1x1":
        return Conv1x1BNReLU(C_in, C_out, bn_momentum, bn_eps)
    if op == "sep_conv3x3":
        rate = (args[0] * rate_multiplier, args[1] * rate_multiplier)
        return SeparableAtrousConv(C_in, C_out, rate, bn_momentum, bn_eps)
    if op == "pyramid_pooling":
        return PyramidPooling(C_in, C_out, args, bn_momentum, bn_eps)
    raise ValueError(f"make_dpc_op: unknown op {op!r}")
