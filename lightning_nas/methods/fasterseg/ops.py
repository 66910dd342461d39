"""FasterSeg's operators, fixed (derived network) or slimmable (supernet "super-kernels").

The five candidate operators of FasterSeg (Chen et al., ICLR 2020; reference §3.1) are built by
:func:`make_fasterseg_op`. Without channel choices an operator is made of plain ``nn.Conv2d`` /
``nn.BatchNorm2d`` layers (what the derived network retrains, times and exports). With channel
choices it is *slimmable*: :class:`SlimConv2d` and :class:`SlimBatchNorm2d` are built at the
largest widths and every call runs the first ``c_in`` input and ``c_out`` output channels, with a
private BatchNorm (statistics and affine γ/β) per output width (switchable BatchNorm, the
release's ``USBatchNorm2d``; ``shared_bn_affine=True``: one γ/β sliced for every width).

Every operator maps ``(N, c_in, H, W)`` to ``(N, c_out, H', W')`` with ``H' = H`` at stride 1 and
``H' = ceil(H / 2)`` at stride 2 (odd sizes included). Inside, a zoomed convolution at stride 1
runs at ``floor(H / 2)`` (at least 1), the release's ``size=(H // 2, W // 2)``; at stride 2 it
resizes to ``ceil(H / 2)``, the size every stride-2 operator gives (the release's ``H // 2`` would
not add up with its stride-2 convolutions on odd sizes). With ``align_corners=True`` (as in the
release) the sampled positions depend only on the input and output sizes.

Example:
    >>> import torch
    >>> from lightning_nas.methods.fasterseg.ops import make_fasterseg_op
    >>> fixed = make_fasterseg_op("conv_2x_downup", 8, 16, stride=2)
    >>> tuple(fixed(torch.randn(2, 8, 9, 7)).shape)
    (2, 16, 5, 4)
    >>> slim = make_fasterseg_op("conv", 8, 16, 1, in_choices=(4, 8), out_choices=(8, 16))
    >>> tuple(slim(torch.randn(2, 4, 9, 7), c_out=8).shape)
    (2, 8, 9, 7)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.methods.fasterseg.genotype import FASTERSEG_PRIMITIVES
from lightning_nas.ops import ConvNorm, SlimBatchNorm2d, SlimConv2d, resize

__all__ = [
    "FASTERSEG_PRIMITIVES",
    "ConvNorm",
    "FasterSegConv",
    "FasterSegIdentity",
    "FasterSegSkip",
    "Head",
    "SlimBatchNorm2d",
    "SlimConv2d",
    "UpsampleConcat",
    "make_fasterseg_op",
    "make_fasterseg_stem",
    "num_filters",
    "resize",
    "stem_channels",
]


def num_filters(scale: int, Fch: int, width: float) -> int:
    """Channels at output stride ``scale`` for width ratio ``width``: ``round(scale·Fch·width)``.

    Args:
        scale: Output stride of the feature (2, 4, 8, 16, 32).
        Fch: Base channel count (12 in FasterSeg).
        width: Width ratio (``k / 12`` in FasterSeg).

    Returns:
        The channel count, at least 1.

    Example:
        >>> num_filters(8, 12, 8 / 12), num_filters(32, 12, 1.0), num_filters(8, 2, 4 / 12)
        (64, 384, 5)
    """
    return max(1, int(round(scale * Fch * width)))


def stem_channels(Fch: int, width: float) -> tuple[int, int, int]:
    """Output channels of the stem's three stride-2 stages: ``2·nf(2), 2·nf(4), nf(8)``.

    Args:
        Fch: Base channel count.
        width: Stem width ratio.

    Returns:
        The three channel counts (the last one at output stride 8).

    Example:
        >>> stem_channels(12, 8 / 12)
        (32, 64, 64)
    """
    return (
        2 * num_filters(2, Fch, width),
        2 * num_filters(4, Fch, width),
        num_filters(8, Fch, width),
    )


def _half(x: torch.Tensor, ceil: bool) -> torch.Tensor:
    """Bilinear resize to ``floor(H / 2) × floor(W / 2)`` (at least 1), or ``ceil`` halves."""
    h, w = x.shape[-2], x.shape[-1]
    if ceil:
        return resize(x, ((h + 1) // 2, (w + 1) // 2))
    return resize(x, (max(1, h // 2), max(1, w // 2)))


# ----------------------------------------------------------------------------- operators
class _FasterSegOp(nn.Module):
    """Shared plumbing: fixed or slimmable conv/BN factories and the output width of a call."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int,
        in_choices: Sequence[int] | None,
        out_choices: Sequence[int] | None,
        shared_bn_affine: bool = False,
    ) -> None:
        super().__init__()
        self.shared_bn_affine = bool(shared_bn_affine)
        self.C_in = C_in
        self.C_out = C_out
        self.stride = stride
        self.slimmable = in_choices is not None or out_choices is not None
        self.in_choices: tuple[int, ...] = tuple(in_choices) if in_choices else (C_in,)
        self.out_choices: tuple[int, ...] = tuple(out_choices) if out_choices else (C_out,)

    def _conv(self, C_in: int, C_out: int, kernel_size: int, stride: int) -> nn.Conv2d:
        cls = SlimConv2d if self.slimmable else nn.Conv2d
        return cls(C_in, C_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)

    def _bn(self, C: int) -> nn.Module:
        if not self.slimmable:
            return nn.BatchNorm2d(C)
        return SlimBatchNorm2d(C, self.out_choices, shared_affine=self.shared_bn_affine)

    def _width(self, c_out: int | None) -> int:
        if c_out is None or c_out == self.C_out:
            return self.C_out
        if not self.slimmable:
            raise ValueError(
                f"{type(self).__name__}: a fixed operator outputs {self.C_out} channels; got "
                f"c_out={c_out} (build it with out_choices to make it slimmable)"
            )
        return c_out

    @staticmethod
    def _run(conv: nn.Module, x: torch.Tensor, c_out: int) -> torch.Tensor:
        return conv(x, c_out) if isinstance(conv, SlimConv2d) else conv(x)

    def extra_repr(self) -> str:
        slim = f", out_choices={list(self.out_choices)}" if self.slimmable else ""
        return f"C_in={self.C_in}, C_out={self.C_out}, stride={self.stride}{slim}"


class FasterSegConv(_FasterSegOp):
    """``conv``, ``conv_2x``, ``conv_downup`` and ``conv_2x_downup`` (3×3 convs, no bias).

    * plain (``zoomed=False``): Conv3×3(stride) → BN → ReLU, twice for ``num_convs=2`` (the
      second conv ``c_out → c_out``, stride 1).
    * zoomed (``zoomed=True``): bilinear resize to half size → Conv3×3 → BN [→ ReLU → Conv3×3
      → BN] → bilinear resize back to ``H × W`` if ``stride == 1`` → ReLU. At stride 1 the half
      size is ``floor(H/2) × floor(W/2)`` (at least 1), the release's ``size=(H//2, W//2)``; at
      stride 2 the output stays at the half size, ``ceil(H/2) × ceil(W/2)`` so that it agrees
      with the other stride-2 operators on odd sizes (the release's ``H//2`` there would not add
      up with its stride-2 convs; on even sizes both are the same).

    Args:
        C_in: Input channels (largest, when slimmable).
        C_out: Output channels (largest, when slimmable).
        stride: 1 or 2.
        num_convs: 1 or 2.
        zoomed: Whether the convs run at half resolution.
        in_choices: Input widths of a slimmable operator (``None``: fixed operator).
        out_choices: Output widths of a slimmable operator (``None``: fixed operator).
        shared_bn_affine: Slimmable only: the BatchNorms share one affine transform across
            widths (:class:`SlimBatchNorm2d`); ``False``: private per width (the release).
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int,
        num_convs: int = 1,
        zoomed: bool = False,
        in_choices: Sequence[int] | None = None,
        out_choices: Sequence[int] | None = None,
        shared_bn_affine: bool = False,
    ) -> None:
        super().__init__(C_in, C_out, stride, in_choices, out_choices, shared_bn_affine)
        self.zoomed = zoomed
        self.conv1 = self._conv(C_in, C_out, 3, 1 if zoomed else stride)
        self.bn1 = self._bn(C_out)
        self.conv2: nn.Module | None = None
        self.bn2: nn.Module | None = None
        if num_convs == 2:
            self.conv2 = self._conv(C_out, C_out, 3, 1)
            self.bn2 = self._bn(C_out)

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:
        """Apply the operator; ``c_out`` (slimmable only) selects the output width."""
        c = self._width(c_out)
        out = _half(x, ceil=self.stride == 2) if self.zoomed else x
        out = self.bn1(self._run(self.conv1, out, c))
        if self.conv2 is not None and self.bn2 is not None:
            out = self.bn2(self._run(self.conv2, F.relu(out), c))
        if self.zoomed and self.stride == 1:
            out = resize(out, x.shape[-2:])
        return F.relu(out)


class FasterSegSkip(_FasterSegOp):
    """``skip``: FactorizedReduce at stride 2, a 1×1 ConvNorm at stride 1 (no identity here).

    Stride 2: two 1×1 stride-2 convs, the second on ``x[:, :, 1:, 1:]`` (zero-padded by one
    row and column at the bottom/right so odd sizes give ``ceil(H/2)`` on both), giving
    ``c_out // 2`` and ``c_out - c_out // 2`` channels → concat → BN → ReLU. No ReLU before the
    convs. Stride 1: 1×1 conv → BN → ReLU. A fixed stride-1 ``skip`` with ``C_in == C_out`` is
    :class:`FasterSegIdentity` instead (see :func:`make_fasterseg_op`).

    Args:
        C_in: Input channels (largest, when slimmable).
        C_out: Output channels (largest, when slimmable).
        stride: 1 or 2.
        in_choices: Input widths of a slimmable operator (``None``: fixed operator).
        out_choices: Output widths of a slimmable operator (``None``: fixed operator).
        shared_bn_affine: Slimmable only: the BatchNorm shares one affine transform across
            widths (:class:`SlimBatchNorm2d`); ``False``: private per width (the release).

    Raises:
        ValueError: At stride 2, if an output width is below 2.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int,
        in_choices: Sequence[int] | None = None,
        out_choices: Sequence[int] | None = None,
        shared_bn_affine: bool = False,
    ) -> None:
        super().__init__(C_in, C_out, stride, in_choices, out_choices, shared_bn_affine)
        if stride == 2:
            if min(C_out, *self.out_choices) < 2:
                raise ValueError(f"skip: stride 2 needs output widths >= 2, got C_out={C_out}")
            self.conv_1 = self._conv(C_in, C_out // 2, 1, 2)
            self.conv_2 = self._conv(C_in, C_out - C_out // 2, 1, 2)
        else:
            self.conv = self._conv(C_in, C_out, 1, 1)
        self.bn = self._bn(C_out)

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:
        """Apply the operator; ``c_out`` (slimmable only) selects the output width."""
        c = self._width(c_out)
        if self.stride == 2:
            shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
            out = torch.cat(
                [self._run(self.conv_1, x, c // 2), self._run(self.conv_2, shifted, c - c // 2)],
                dim=1,
            )
        else:
            out = self._run(self.conv, x, c)
        return F.relu(self.bn(out))


class FasterSegIdentity(nn.Identity):
    """The fixed stride-1 ``skip`` when input and output widths agree."""

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        """Return ``x``."""
        return x


def make_fasterseg_op(
    name: str,
    C_in: int,
    C_out: int,
    stride: int,
    in_choices: Sequence[int] | None = None,
    out_choices: Sequence[int] | None = None,
    shared_bn_affine: bool = False,
) -> nn.Module:
    """Build the FasterSeg operator ``name`` (one of :data:`FASTERSEG_PRIMITIVES`).

    Every operator's ``forward(x, c_out=None)`` maps ``C_in`` (or fewer, when slimmable)
    channels to ``c_out`` (``None``: ``C_out``) and halves the size (``ceil``) at stride 2.

    Args:
        name: The operator.
        C_in: Input channels (the largest width when slimmable).
        C_out: Output channels (the largest width when slimmable).
        stride: 1 or 2.
        in_choices: Input widths the slimmable operator is used with (each ``<= C_in``).
        out_choices: Output widths it may produce (each ``<= C_out``; one BatchNorm statistics
            set each). With both ``None`` the operator is a plain fixed module (``nn.Conv2d`` /
            ``nn.BatchNorm2d``, nothing sliced); a given one alone makes the other ``(C_in,)``
            or ``(C_out,)``.
        shared_bn_affine: Slimmable only: BatchNorms with one affine transform shared by every
            width and private statistics (:class:`SlimBatchNorm2d`); ``False`` (default): a
            private BatchNorm per width, as the release's ``USBatchNorm2d``.

    Returns:
        The operator.

    Raises:
        ValueError: If ``name`` is unknown, ``stride`` is not 1 or 2, or a width is invalid.
    """
    if name not in FASTERSEG_PRIMITIVES:
        raise ValueError(f"unknown op {name!r}; expected one of {', '.join(FASTERSEG_PRIMITIVES)}")
    if stride not in (1, 2):
        raise ValueError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    for what, value in (("C_in", C_in), ("C_out", C_out)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"op {name!r}: {what} must be an integer >= 1, got {value!r}")
    for what, choices, largest in (
        ("in_choices", in_choices, C_in),
        ("out_choices", out_choices, C_out),
    ):
        if choices is not None and (not choices or any(not 1 <= c <= largest for c in choices)):
            raise ValueError(
                f"op {name!r}: {what} must be widths in 1..{largest}, got {list(choices)}"
            )
    slim = {
        "in_choices": in_choices,
        "out_choices": out_choices,
        "shared_bn_affine": shared_bn_affine,
    }
    if name == "skip":
        if stride == 1 and C_in == C_out and in_choices is None and out_choices is None:
            return FasterSegIdentity()
        return FasterSegSkip(C_in, C_out, stride, **slim)
    return FasterSegConv(
        C_in,
        C_out,
        stride,
        num_convs=2 if name.startswith("conv_2x") else 1,
        zoomed=name.endswith("downup"),
        **slim,
    )


# ----------------------------------------------------------------------------- fixed blocks
class Head(nn.Module):
    """FasterSeg's prediction head: ConvNorm 3×3 ``C_in → mid`` → 1×1 conv (with bias).

    ``mid = C_in`` if ``C_in <= 256``, else ``C_in // 2``.

    Args:
        C_in: Input channels.
        num_classes: Output channels (classes).

    Example:
        >>> import torch
        >>> head = Head(300, 19)
        >>> head.conv.conv.out_channels, tuple(head(torch.randn(1, 300, 4, 4)).shape)
        (150, (1, 19, 4, 4))
    """

    def __init__(self, C_in: int, num_classes: int) -> None:
        super().__init__()
        mid = C_in if C_in <= 256 else C_in // 2
        self.conv = ConvNorm(C_in, mid, 3)
        self.classifier = nn.Conv2d(mid, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the input's size."""
        return self.classifier(self.conv(x))


def make_fasterseg_stem(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """The stem: ConvNorm 3×3 stride 2 → ``conv_2x`` stride 2 → ``conv_2x`` stride 2 (stride 8).

    Args:
        in_channels: Image channels.
        channels: Output channels of the three stages (:func:`stem_channels`).

    Returns:
        The three stages as a ``Sequential``.

    Example:
        >>> import torch
        >>> stem = make_fasterseg_stem(3, stem_channels(12, 8 / 12))
        >>> tuple(stem(torch.randn(1, 3, 67, 99)).shape)
        (1, 64, 9, 13)
    """
    c1, c2, c3 = channels
    return nn.Sequential(
        ConvNorm(in_channels, c1, 3, stride=2),
        make_fasterseg_op("conv_2x", c1, c2, 2),
        make_fasterseg_op("conv_2x", c2, c3, 2),
    )


class UpsampleConcat(nn.Module):
    """Resize ``low`` bilinearly to ``skip``'s size and concatenate ``[low, skip]`` on channels."""

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Return ``cat([resize(low, skip.shape[-2:]), skip], dim=1)``."""
        return torch.cat([resize(low, skip.shape[-2:]), skip], dim=1)
