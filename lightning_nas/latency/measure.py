"""Measure the latency of operations and networks on the current device.

An :class:`OpConfig` names one operation at one shape (the key of a latency table);
:func:`build_op` turns it into the module and input shapes that a real network runs, and
:class:`OpTimer` times it. :func:`measure_module` is the single timing routine, used for table
entries and for end-to-end network measurements alike, so estimates and measurements are taken
the same way: eval mode, ``torch.inference_mode()``, warm-up calls, then the median of timed
repeats with the device synchronised before and after each one.

Example:
    >>> from lightning_nas.latency.measure import OpConfig, build_op
    >>> cfg = OpConfig("sep_conv_3x3", C_in=4, C_out=4, H=8, W=8, stride=2)
    >>> cfg.key
    'sep_conv_3x3|Cin=4|Cout=4|H=8|W=8|stride=2'
    >>> OpConfig.from_key(cfg.key) == cfg
    True
    >>> module, shapes = build_op(cfg)
    >>> shapes
    [(4, 8, 8)]
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.ops import (
    AUTODEEPLAB_PRIMITIVES,
    DARTS_PRIMITIVES,
    FactorizedReduce,
    ReLUConvBN,
    make_autodeeplab_op,
    make_op,
)
from lightning_nas.ops_fasterseg import (
    FASTERSEG_PRIMITIVES,
    ConvNorm,
    Head,
    UpsampleConcat,
    make_fasterseg_op,
    make_fasterseg_stem,
    stem_channels,
)

__all__ = [
    "BLOCKS",
    "OpConfig",
    "OpTimer",
    "build_op",
    "device_name",
    "dtype_name",
    "measure_module",
]

_INT_FIELDS = ("C_in", "C_out", "H", "W", "stride")
_KEY_NAMES = {"Cin": "C_in", "Cout": "C_out", "H": "H", "W": "W", "stride": "stride"}


@dataclass(frozen=True)
class OpConfig:
    """One operation at one shape: the key of a latency-table entry.

    Args:
        op: Operation name (see :func:`build_op` for the names it knows).
        C_in: Input channels.
        C_out: Output channels.
        H: Input height (for ``bilinear_upsample``: the output height, see :func:`build_op`).
        W: Input width (likewise).
        stride: Spatial stride (1 or 2 for the candidate operations).
        expansion: Expansion or width ratio where the operation has one (``None`` otherwise);
            stored as a float.

    Raises:
        ValueError: If a field is out of range or ``op`` contains ``|`` or ``=``.
    """

    op: str
    C_in: int
    C_out: int
    H: int
    W: int
    stride: int = 1
    expansion: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not self.op or "|" in self.op or "=" in self.op:
            raise ValueError(
                f"OpConfig: op must be a non-empty name without '|' or '=', got {self.op!r}"
            )
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OpConfig: {name} must be an integer >= 1, got {value!r}")
        if self.expansion is not None:
            value = float(self.expansion)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"OpConfig: expansion must be > 0 or None, got {self.expansion!r}")
            object.__setattr__(self, "expansion", value)

    @property
    def key(self) -> str:
        """The stable string key, e.g. ``'skip_connect|Cin=8|Cout=8|H=16|W=16|stride=1'``.

        ``|expansion=<float>`` is appended only when ``expansion`` is set.
        """
        key = (
            f"{self.op}|Cin={self.C_in}|Cout={self.C_out}|H={self.H}|W={self.W}"
            f"|stride={self.stride}"
        )
        if self.expansion is not None:
            key += f"|expansion={self.expansion!r}"
        return key

    def __str__(self) -> str:
        return self.key

    @classmethod
    def from_key(cls, key: str) -> OpConfig:
        """Parse a key written by :attr:`key`.

        Raises:
            ValueError: If ``key`` is not a canonical key.
        """
        if not isinstance(key, str):
            raise ValueError(f"latency key must be a string, got {type(key).__name__}")
        op, *parts = key.split("|")
        fields: dict[str, object] = {}
        try:
            for part in parts:
                name, sep, value = part.partition("=")
                if not sep or name in fields:
                    raise ValueError(part)
                if name == "expansion":
                    fields["expansion"] = float(value)
                elif name in _KEY_NAMES:
                    fields[_KEY_NAMES[name]] = int(value)
                else:
                    raise ValueError(part)
            config = cls(op=op, **fields)  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"malformed latency key {key!r} (expected e.g. "
                f"'sep_conv_3x3|Cin=16|Cout=16|H=32|W=32|stride=1'): {err}"
            ) from None
        if config.key != key:
            raise ValueError(f"non-canonical latency key {key!r}; expected {config.key!r}")
        return config


# ----------------------------------------------------------------------------- blocks
class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class _Concat(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class _Resize(nn.Module):
    def __init__(self, size: tuple[int, int], align_corners: bool = False) -> None:
        super().__init__()
        self.size = size
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def _conv3x3_bn(c: OpConfig) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c.C_in, c.C_out, 3, stride=c.stride, padding=1, bias=False),
        nn.BatchNorm2d(c.C_out),
    )


def _relu_conv1x1(c: OpConfig) -> nn.Module:
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c.C_in, c.C_out, 1, stride=c.stride))


def _factorized_reduce(c: OpConfig) -> nn.Module:
    if c.stride != 2:
        raise ValueError(f"{c.key}: factorized_reduce has stride 2")
    return FactorizedReduce(c.C_in, c.C_out)


def _upsample(c: OpConfig) -> nn.Module:
    if c.C_in != c.C_out:
        raise ValueError(f"{c.key}: bilinear_upsample keeps the channels (C_in == C_out)")
    return _Resize((c.H, c.W))


def _same_channels(c: OpConfig, what: str) -> None:
    if c.C_in != c.C_out:
        raise ValueError(f"{c.key}: {what} has C_in == C_out")


def _conv_bn_relu(c: OpConfig, k: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c.C_in, c.C_out, k, stride=c.stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c.C_out),
        nn.ReLU(inplace=False),
    )


def _autodeeplab_block(c: OpConfig) -> tuple[nn.Module, list[tuple[int, int, int]]]:
    """The Auto-DeepLab network pieces (``adl_*``) of :func:`build_op`."""
    from lightning_nas.networks.autodeeplab import AutoDeepLabASPP, aspp_rates

    shape = (c.C_in, c.H, c.W)
    if c.op == "adl_stem":
        if c.stride != 4 or c.C_out % 2:
            raise ValueError(f"{c.key}: adl_stem has stride 4 and an even C_out")
        mid = c.C_out // 2
        module = nn.Sequential(
            nn.Conv2d(c.C_in, mid, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=False),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=False),
            nn.Conv2d(mid, c.C_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c.C_out),
        )
        return module, [shape]
    if c.op == "adl_aspp":
        aspp = AutoDeepLabASPP(c.C_in, c.C_out, aspp_rates(c.stride))
        return nn.Sequential(nn.ReLU(), aspp), [shape]
    _same_channels(c, c.op)
    if c.op == "adl_downsample":
        return _Resize((_ceil_div(c.H, c.stride), _ceil_div(c.W, c.stride)), True), [shape]
    # adl_upsample
    return _Resize((c.H, c.W), True), [(c.C_in, _ceil_div(c.H, c.stride), _ceil_div(c.W, c.stride))]


_AUTODEEPLAB_BLOCKS = ("adl_stem", "adl_aspp", "adl_downsample", "adl_upsample")
_FASTERSEG_OPS = tuple(f"fs_{p}" for p in FASTERSEG_PRIMITIVES)


def _fasterseg_block(c: OpConfig) -> tuple[nn.Module, list[tuple[int, int, int]]]:
    """The FasterSeg network pieces (``fs_*``) of :func:`build_op`."""
    shape = (c.C_in, c.H, c.W)
    low = (c.C_in, _ceil_div(c.H, c.stride), _ceil_div(c.W, c.stride))
    if c.op in _FASTERSEG_OPS:
        return make_fasterseg_op(c.op.removeprefix("fs_"), c.C_in, c.C_out, c.stride), [shape]
    if c.op == "fs_stem":
        if c.stride != 8:
            raise ValueError(f"{c.key}: fs_stem has stride 8")
        channels = stem_channels(1, c.C_out / 8 if c.expansion is None else c.expansion)
        if channels[2] != c.C_out:
            raise ValueError(
                f"{c.key}: the stem of width unit {c.expansion} outputs {channels[2]} channels"
            )
        return make_fasterseg_stem(c.C_in, channels), [shape]
    if c.op in ("fs_convnorm1x1", "fs_convnorm3x3"):
        return ConvNorm(c.C_in, c.C_out, int(c.op[-1]), c.stride), [shape]
    if c.op == "fs_head":
        return Head(c.C_in, c.C_out), [shape]
    if c.op == "fs_up2_concat":
        if c.C_out <= c.C_in:
            raise ValueError(f"{c.key}: fs_up2_concat needs C_out > C_in (C_out - C_in: skip)")
        return UpsampleConcat(), [low, (c.C_out - c.C_in, c.H, c.W)]
    # fs_upsample
    _same_channels(c, "fs_upsample")
    return _Resize((c.H, c.W), align_corners=True), [low]


BLOCKS: dict[str, str] = {
    "conv3x3_bn": "Conv 3×3 (stride, no bias) → BN — the DARTS stem",
    "relu_conv1x1_bn": "ReLU → Conv 1×1 (stride) → BN — a DARTS cell preprocess",
    "factorized_reduce": "FactorizedReduce (stride 2) — preprocess after a reduction cell",
    "relu_conv1x1": "ReLU → Conv 1×1 with bias — the segmentation head's classifier",
    "bilinear_upsample": "bilinear resize from ceil(H/stride)×ceil(W/stride) to H×W",
    "add": "elementwise sum of two (C_in, H, W) tensors",
    "concat": "channel concat of C_out // C_in tensors of (C_in, H, W)",
    "concat2": "channel concat of a (C_in, H, W) and a (C_out - C_in, H, W) tensor",
    "conv1x1": "Conv 1×1 (stride) with bias — a classifier",
    "conv1x1_bn_relu": "Conv 1×1 (stride, no bias) → BN → ReLU",
    "conv3x3_bn_relu": "Conv 3×3 (stride, no bias) → BN → ReLU",
    "adl_stem": "Auto-DeepLab network stem (stride 4): Conv 3×3 s2 → BN → ReLU → Conv 3×3 → BN "
    "→ ReLU → Conv 3×3 s2 → BN, C_out / 2, C_out / 2, C_out filters",
    "adl_aspp": "ReLU → Auto-DeepLab's DeepLabv3+ ASPP to C_out channels on a feature at output "
    "stride `stride` (which sets the atrous rates)",
    "adl_downsample": "bilinear resize (align_corners) from H×W to ceil(H/stride)×ceil(W/stride)",
    "adl_upsample": "bilinear resize (align_corners) from ceil(H/stride)×ceil(W/stride) to H×W",
    "fs_stem": "FasterSeg stem (stride 8) to C_out channels (width unit Fch·r: expansion, "
    "default C_out / 8)",
    "fs_convnorm1x1": "Conv 1×1 (stride, no bias) → BN → ReLU — FasterSeg head",
    "fs_convnorm3x3": "Conv 3×3 (stride, no bias) → BN → ReLU — FasterSeg head",
    "fs_up2_concat": "bilinear resize of (C_in, ceil(H/stride), ceil(W/stride)) to H×W, concat "
    "with a (C_out - C_in, H, W) skip — FasterSeg head",
    "fs_head": "FasterSeg Head: ConvNorm 3×3 → Conv 1×1 with bias to C_out classes",
    "fs_upsample": "bilinear resize (align_corners) from ceil(H/stride)×ceil(W/stride) to H×W",
}
"""The building blocks :func:`build_op` knows besides the candidate operations."""


def build_op(config: OpConfig) -> tuple[nn.Module, list[tuple[int, int, int]]]:
    """The module of ``config`` and the shapes ``(C, H, W)`` of its inputs (batch excluded).

    Known names: every :data:`~lightning_nas.ops.DARTS_PRIMITIVES` and
    :data:`~lightning_nas.ops.AUTODEEPLAB_PRIMITIVES` operation except ``none`` (``C_in ==
    C_out``, built by :func:`~lightning_nas.ops.make_op` with affine BatchNorm, as in a derived
    network; pools bare), ``fs_<op>`` for every
    :data:`~lightning_nas.ops_fasterseg.FASTERSEG_PRIMITIVES` operator (the fixed operator of
    :func:`~lightning_nas.ops_fasterseg.make_fasterseg_op`, ``C_in → C_out``), and the blocks of
    :data:`BLOCKS`. ``H``/``W`` are the input size, except for ``bilinear_upsample``,
    ``fs_upsample``, ``fs_up2_concat`` and ``adl_upsample`` where they are the output size and
    ``stride`` the upsampling factor.

    Raises:
        ValueError: If the name is unknown or the configuration does not fit the operation.
    """
    c = config
    shape = (c.C_in, c.H, c.W)
    if c.op == "none":
        raise ValueError(
            f"{c.key}: 'none' is never part of a derived network and has no latency entry (its "
            "latency is 0 by definition)"
        )
    if c.op in DARTS_PRIMITIVES:
        _same_channels(c, c.op)
        return make_op(c.op, c.C_in, c.stride, affine=True), [shape]
    if c.op in AUTODEEPLAB_PRIMITIVES:
        _same_channels(c, c.op)
        return make_autodeeplab_op(c.op, c.C_in, c.stride, affine=True), [shape]
    if c.op == "conv3x3_bn":
        return _conv3x3_bn(c), [shape]
    if c.op == "relu_conv1x1_bn":
        return ReLUConvBN(c.C_in, c.C_out, 1, c.stride, 0), [shape]
    if c.op == "factorized_reduce":
        return _factorized_reduce(c), [shape]
    if c.op == "relu_conv1x1":
        return _relu_conv1x1(c), [shape]
    if c.op == "bilinear_upsample":
        module = _upsample(c)
        return module, [(c.C_in, _ceil_div(c.H, c.stride), _ceil_div(c.W, c.stride))]
    if c.op == "add":
        _same_channels(c, "add")
        return _Add(), [shape, shape]
    if c.op == "concat":
        if c.C_out % c.C_in != 0:
            raise ValueError(f"{c.key}: concat needs C_out to be a multiple of C_in")
        return _Concat(), [shape] * (c.C_out // c.C_in)
    if c.op == "concat2":
        if c.C_out <= c.C_in:
            raise ValueError(f"{c.key}: concat2 needs C_out > C_in (C_out - C_in: the second)")
        return _Concat(), [shape, (c.C_out - c.C_in, c.H, c.W)]
    if c.op == "conv1x1":
        return nn.Conv2d(c.C_in, c.C_out, 1, stride=c.stride), [shape]
    if c.op in ("conv1x1_bn_relu", "conv3x3_bn_relu"):
        return _conv_bn_relu(c, int(c.op[4])), [shape]
    if c.op in _AUTODEEPLAB_BLOCKS:
        return _autodeeplab_block(c)
    if c.op.startswith("fs_") and (c.op in _FASTERSEG_OPS or c.op in BLOCKS):
        return _fasterseg_block(c)
    known = sorted(
        {*DARTS_PRIMITIVES, *AUTODEEPLAB_PRIMITIVES, *BLOCKS, *_FASTERSEG_OPS} - {"none"}
    )
    raise ValueError(f"{c.key}: unknown op {c.op!r}; known: {', '.join(known)}")


# ----------------------------------------------------------------------------- devices
def dtype_name(dtype: torch.dtype | str) -> str:
    """``torch.float32`` or ``"float32"`` → ``"float32"``.

    Raises:
        ValueError: If ``dtype`` is not a torch dtype name.
    """
    name = str(dtype).removeprefix("torch.")
    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return name


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: torch.device | str) -> str:
    """The hardware behind ``device``: the GPU's name for CUDA, the CPU model for ``cpu``.

    Example:
        >>> isinstance(device_name("cpu"), str)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_name()
    return device.type


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ----------------------------------------------------------------------------- timing
def measure_module(
    module: nn.Module | Callable[..., object],
    inputs: Sequence[torch.Tensor],
    warmup: int = 10,
    repeats: int = 30,
    number: int = 1,
) -> float:
    """Median latency in milliseconds of ``module(*inputs)``.

    The module is put in eval mode (its previous mode is restored afterwards) and called under
    ``torch.inference_mode()``: ``warmup`` untimed calls, then ``repeats`` timed samples of
    ``number`` calls each, the device synchronised before and after every sample (CUDA, MPS).

    Args:
        module: The module (or any callable) to time; it must already be on the inputs' device.
        inputs: Its positional inputs.
        warmup: Untimed calls first (cuDNN autotuning, allocator, caches).
        repeats: Timed samples; the median is returned.
        number: Calls per sample (the sample time is divided by it).

    Returns:
        The median time of one call, in milliseconds.

    Raises:
        ValueError: If ``repeats`` or ``number`` is below 1 or ``warmup`` is negative.
    """
    if repeats < 1 or number < 1 or warmup < 0:
        raise ValueError(
            f"measure_module: need repeats >= 1, number >= 1, warmup >= 0; got repeats={repeats}, "
            f"number={number}, warmup={warmup}"
        )
    device = inputs[0].device if inputs else torch.device("cpu")
    was_training = module.training if isinstance(module, nn.Module) else None
    if isinstance(module, nn.Module):
        module.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                module(*inputs)
            samples = []
            for _ in range(repeats):
                _synchronize(device)
                start = time.perf_counter()
                for _ in range(number):
                    module(*inputs)
                _synchronize(device)
                samples.append((time.perf_counter() - start) / number)
    finally:
        if isinstance(module, nn.Module) and was_training is not None:
            module.train(was_training)
    return statistics.median(samples) * 1e3


class OpTimer:
    """Time an :class:`OpConfig` on a device: the default measuring callable of a table build.

    Args:
        device: Where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
        dtype: Parameter and input dtype.
        batch_size: Batch size of the random inputs.
        warmup: Untimed calls before timing.
        repeats: Timed samples (median).
        number: Calls per timed sample.
        seed: Seed of the random weights and inputs.

    Example:
        >>> timer = OpTimer("cpu", warmup=1, repeats=3)
        >>> timer(OpConfig("skip_connect", 4, 4, 8, 8)) >= 0.0
        True
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
        batch_size: int = 1,
        warmup: int = 10,
        repeats: int = 30,
        number: int = 1,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"OpTimer: batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.dtype: torch.dtype = getattr(torch, dtype_name(dtype))
        self.batch_size = batch_size
        self.warmup = warmup
        self.repeats = repeats
        self.number = number
        self.seed = seed

    def __call__(self, config: OpConfig) -> float:
        """Median latency of ``config`` in milliseconds."""
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):  # weight init leaves the global RNG alone
            torch.manual_seed(self.seed)
            module, shapes = build_op(config)
        module = module.to(self.device, self.dtype)
        inputs = [
            torch.randn((self.batch_size, *s), generator=generator).to(self.device, self.dtype)
            for s in shapes
        ]
        return measure_module(
            module, inputs, warmup=self.warmup, repeats=self.repeats, number=self.number
        )
