"""Slimmable layers: built at their largest widths, run at any leading slice of them.

FasterSeg's "super-kernels" (the release's ``USConv2d`` / ``USBatchNorm2d``), usable by any
method that searches widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SlimBatchNorm2d", "SlimConv2d"]


class SlimConv2d(nn.Conv2d):
    """A convolution built at its largest widths that runs any leading slice of them.

    ``forward(x, c_out)`` convolves with ``weight[:c_out, :x.shape[1]]`` (and ``bias[:c_out]``),
    so one set of weights serves every width (FasterSeg's "super-kernel", ``USConv2d``).

    Args:
        in_channels: Largest input width.
        out_channels: Largest output width.
        kernel_size: Kernel size.
        stride: Stride.
        padding: Zero padding.
        dilation: Dilation.
        groups: Must be 1 (slicing grouped weights is not supported).
        bias: Whether the convolution has a bias.

    Raises:
        ValueError: If ``groups`` is not 1.

    Example:
        >>> import torch
        >>> conv = SlimConv2d(8, 16, 3, padding=1, bias=False)
        >>> tuple(conv(torch.randn(1, 5, 6, 6), c_out=12).shape)
        (1, 12, 6, 6)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        if groups != 1:
            raise ValueError(f"SlimConv2d: groups must be 1, got {groups}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
        )

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        """Convolve ``x`` (``c_in <= in_channels`` channels) into ``c_out`` channels (None: all).

        Raises:
            ValueError: If ``x`` has too many channels or ``c_out`` is out of range.
        """
        c_in = x.shape[1]
        if c_in > self.in_channels:
            raise ValueError(
                f"SlimConv2d: input has {c_in} channels; expected at most {self.in_channels}"
            )
        if c_out is None:
            c_out = self.out_channels
        elif not 1 <= c_out <= self.out_channels:
            raise ValueError(f"SlimConv2d: c_out must be in 1..{self.out_channels}, got {c_out}")
        bias = None if self.bias is None else self.bias[:c_out]
        return F.conv2d(
            x, self.weight[:c_out, :c_in], bias, self.stride, self.padding, self.dilation, 1
        )


class SlimBatchNorm2d(nn.Module):
    """Switchable BatchNorm: one BatchNorm per width, chosen by the input's channel count.

    By default (``shared_affine=False``) every width in ``channel_choices`` has a fully private
    ``nn.BatchNorm2d(c)`` — its own running statistics *and* its own affine γ/β — in the
    ``ModuleList`` ``bn`` (sorted widths; ``bn.<i>.weight``, ``bn.<i>.running_mean``, …), as the
    release's ``USBatchNorm2d`` (``search/slimmable_ops.py``) and Slimmable Networks' switchable
    BatchNorm do: ``2·Σ channel_choices`` affine parameters. (The release's class also inherits an
    unused ``weight``/``bias`` of the largest width, which is not built here.)

    ``shared_affine=True`` (the layout of earlier versions of this project): one affine
    ``weight``/``bias`` of ``num_features`` entries, of which a ``c``-channel input uses the first
    ``c``, and private running statistics per width (buffers ``running_mean_<c>``,
    ``running_var_<c>``).

    A checkpoint written with the shared layout loads into the private one (each width starts
    from its slice of the shared γ/β and its own statistics). Momentum 0.1, ε 1e-5 (PyTorch's
    defaults).

    In training mode with gradients on, the private affine parameters of the widths that do not
    run enter the output with weight 0: every parameter takes part in every backward (plain DDP
    requires it; they get a zero gradient, as the release's ``optimizer.zero_grad()`` of PyTorch
    1.x left them after their first use).

    Args:
        num_features: Largest width.
        channel_choices: The widths that may run (each in ``1..num_features``).
        shared_affine: One affine transform sliced for every width (``True``) or a private one
            per width (``False``, the release).

    Raises:
        ValueError: If ``channel_choices`` is empty or has a width out of range.

    Example:
        >>> import torch
        >>> bn = SlimBatchNorm2d(16, channel_choices=(8, 16))
        >>> [(n, tuple(p.shape)) for n, p in bn.named_parameters()]
        [('bn.0.weight', (8,)), ('bn.0.bias', (8,)), ('bn.1.weight', (16,)), ('bn.1.bias', (16,))]
        >>> tuple(bn(torch.randn(4, 8, 3, 3)).shape), bn.bn[1].running_mean.abs().sum().item()
        ((4, 8, 3, 3), 0.0)
    """

    def __init__(
        self, num_features: int, channel_choices: Sequence[int], shared_affine: bool = False
    ) -> None:
        super().__init__()
        choices = tuple(sorted({int(c) for c in channel_choices}))
        if not choices or choices[0] < 1 or choices[-1] > num_features:
            raise ValueError(
                f"SlimBatchNorm2d: channel_choices must be widths in 1..{num_features}, got "
                f"{list(channel_choices)}"
            )
        self.num_features = num_features
        self.channel_choices = choices
        self.shared_affine = bool(shared_affine)
        self.momentum = 0.1
        self.eps = 1e-5
        if self.shared_affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
            for c in choices:
                self.register_buffer(f"running_mean_{c}", torch.zeros(c))
                self.register_buffer(f"running_var_{c}", torch.ones(c))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.bn = nn.ModuleList(
                nn.BatchNorm2d(c, eps=self.eps, momentum=self.momentum) for c in choices
            )

    def extra_repr(self) -> str:
        shared = ", shared_affine=True" if self.shared_affine else ""
        return f"{self.num_features}, channel_choices={list(self.channel_choices)}{shared}"

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        """Convert a shared-affine entry (``weight``, ``running_mean_<c>``, …) to private BNs."""
        if not self.shared_affine and f"{prefix}weight" in state_dict:
            weight = state_dict.pop(f"{prefix}weight")
            bias = state_dict.pop(f"{prefix}bias", None)
            tracked = state_dict.pop(f"{prefix}num_batches_tracked", None)
            for i, c in enumerate(self.channel_choices):
                sub = f"{prefix}bn.{i}."
                state_dict.setdefault(f"{sub}weight", weight[:c].clone())
                if bias is not None:
                    state_dict.setdefault(f"{sub}bias", bias[:c].clone())
                for stat in ("mean", "var"):
                    value = state_dict.pop(f"{prefix}running_{stat}_{c}", None)
                    if value is not None:
                        state_dict.setdefault(f"{sub}running_{stat}", value)
                if tracked is not None:
                    state_dict.setdefault(f"{sub}num_batches_tracked", tracked.clone())
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` with the BatchNorm (or statistics) of its width ``c = x.shape[1]``.

        Raises:
            ValueError: If ``c`` is not one of ``channel_choices``.
        """
        c = x.shape[1]
        if c not in self.channel_choices:
            raise ValueError(
                f"SlimBatchNorm2d: input has {c} channels; expected one of "
                f"{list(self.channel_choices)}"
            )
        if self.shared_affine:
            if self.training:
                self.num_batches_tracked.add_(1)
            return F.batch_norm(
                x,
                getattr(self, f"running_mean_{c}"),
                getattr(self, f"running_var_{c}"),
                self.weight[:c],
                self.bias[:c],
                self.training,
                self.momentum,
                self.eps,
            )
        index = self.channel_choices.index(c)
        bn = self.bn[index]
        bias = bn.bias
        if self.training and torch.is_grad_enabled() and len(self.bn) > 1:
            every = sum(p.sum() for m in self.bn for p in (m.weight, m.bias))
            bias = bias + 0.0 * every  # zero gradient to the idle widths (plain DDP)
        if self.training:
            bn.num_batches_tracked.add_(1)
        return F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bias, self.training, bn.momentum, bn.eps
        )
