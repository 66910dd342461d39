"""Turn an :class:`~lightning_nas.latency.config.OpConfig` into the module a network runs.

:func:`build_op` knows the shared blocks (:data:`BLOCKS`) and the named cell candidate operations
of :mod:`lightning_nas.ops.candidates`; every other name comes from the *op builders* it is given:
functions ``config -> (module, input shapes) | None`` (``None``: not mine). A latency-aware
space passes its own as ``latency_op`` (:class:`~lightning_nas.latency.protocols.LatencyAware`),
so the timing and table code here knows no method.

Example:
    >>> from lightning_nas.latency import OpConfig, build_op
    >>> module, shapes = build_op(OpConfig("sep_conv_3x3", C_in=4, C_out=4, H=8, W=8, stride=2))
    >>> shapes
    [(4, 8, 8)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from lightning_nas.latency.config import OpConfig
from lightning_nas.ops import (
    Add,
    Concat,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    Resize,
    ceil_div,
)
from lightning_nas.ops.candidates import CELL_OPS

__all__ = ["BLOCKS", "BuiltOp", "OpBuilder", "build_op", "same_channels"]

Shape = tuple[int, int, int]
BuiltOp = tuple[nn.Module, list[Shape]]
"""A built operation: the module and the ``(C, H, W)`` shape of each input (batch excluded)."""
OpBuilder = Callable[[OpConfig], "BuiltOp | None"]
"""``config -> (module, input shapes)``, or ``None`` for a name the builder does not know."""


def same_channels(c: OpConfig, what: str) -> None:
    """Raise ``ValueError`` unless ``c.C_in == c.C_out``."""
    if c.C_in != c.C_out:
        raise ValueError(f"{c.key}: {what} has C_in == C_out")


def _conv_bn(c: OpConfig, k: int, relu: bool) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(c.C_in, c.C_out, k, stride=c.stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c.C_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def _shared_block(c: OpConfig) -> BuiltOp | None:
    shape = (c.C_in, c.H, c.W)
    low = (c.C_in, ceil_div(c.H, c.stride), ceil_div(c.W, c.stride))
    if c.op in CELL_OPS:
        same_channels(c, c.op)
        return CELL_OPS[c.op](c.C_in, c.stride, True), [shape]
    if c.op == "conv3x3_bn":
        return _conv_bn(c, 3, relu=False), [shape]
    if c.op == "relu_conv1x1_bn":
        return ReLUConvBN(c.C_in, c.C_out, 1, c.stride, 0), [shape]
    if c.op == "factorized_reduce":
        if c.stride != 2:
            raise ValueError(f"{c.key}: factorized_reduce has stride 2")
        return FactorizedReduce(c.C_in, c.C_out), [shape]
    if c.op == "relu_conv1x1":
        return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c.C_in, c.C_out, 1, c.stride)), [
            shape
        ]
    if c.op == "network_call":
        same_channels(c, "network_call")
        return Identity(), [shape]
    if c.op == "bilinear_upsample":
        same_channels(c, "bilinear_upsample")
        return Resize((c.H, c.W)), [low]
    if c.op == "add":
        same_channels(c, "add")
        return Add(), [shape, shape]
    if c.op == "concat":
        if c.C_out % c.C_in != 0:
            raise ValueError(f"{c.key}: concat needs C_out to be a multiple of C_in")
        return Concat(), [shape] * (c.C_out // c.C_in)
    if c.op == "concat2":
        if c.C_out <= c.C_in:
            raise ValueError(f"{c.key}: concat2 needs C_out > C_in (C_out - C_in: the second)")
        return Concat(), [shape, (c.C_out - c.C_in, c.H, c.W)]
    if c.op == "conv1x1":
        return nn.Conv2d(c.C_in, c.C_out, 1, stride=c.stride), [shape]
    if c.op in ("conv1x1_bn_relu", "conv3x3_bn_relu"):
        return _conv_bn(c, int(c.op[4]), relu=True), [shape]
    return None


BLOCKS: dict[str, str] = {
    "conv3x3_bn": "Conv 3×3 (stride, no bias) → BN — a cell network's stem",
    "relu_conv1x1_bn": "ReLU → Conv 1×1 (stride) → BN — a cell's preprocess",
    "factorized_reduce": "FactorizedReduce (stride 2) — preprocess after a reduction cell",
    "relu_conv1x1": "ReLU → Conv 1×1 with bias — the segmentation head's classifier",
    "bilinear_upsample": "bilinear resize from ceil(H/stride)×ceil(W/stride) to H×W",
    "add": "elementwise sum of two (C_in, H, W) tensors",
    "concat": "channel concat of C_out // C_in tensors of (C_in, H, W)",
    "concat2": "channel concat of a (C_in, H, W) and a (C_out - C_in, H, W) tensor",
    "conv1x1": "Conv 1×1 (stride) with bias — a classifier",
    "conv1x1_bn_relu": "Conv 1×1 (stride, no bias) → BN → ReLU",
    "conv3x3_bn_relu": "Conv 3×3 (stride, no bias) → BN → ReLU",
    "network_call": "a module returning its (C_in, H, W) input: the fixed cost of calling a "
    "network (module call, timer, synchronisation), once per network",
}
"""The shared building blocks :func:`build_op` knows besides the cell candidate operations."""


def build_op(config: OpConfig, builders: Sequence[OpBuilder] = ()) -> BuiltOp:
    """The module of ``config`` and the shapes ``(C, H, W)`` of its inputs (batch excluded).

    ``builders`` are asked first, in order (a method's own operations); then the shared names:
    every cell candidate operation of :data:`~lightning_nas.ops.candidates.CELL_OPS` except
    ``none`` (``C_in == C_out``, affine BatchNorm as in a derived network, pools bare) and the
    blocks of :data:`BLOCKS`. ``H``/``W`` are the input size, except for the upsampling blocks,
    where they are the output size and ``stride`` the upsampling factor.

    Args:
        config: The operation and shape.
        builders: Op builders tried first (each returns ``None`` for a name it does not know).

    Returns:
        The module and its input shapes.

    Raises:
        ValueError: If no builder knows the name, or the configuration does not fit the operation.
    """
    if config.op == "none":
        raise ValueError(
            f"{config.key}: 'none' is never part of a derived network and has no latency entry "
            "(its latency is 0 by definition)"
        )
    for builder in builders:
        built = builder(config)
        if built is not None:
            return built
    built = _shared_block(config)
    if built is not None:
        return built
    known = sorted({*CELL_OPS, *BLOCKS} - {"none"})
    hint = "" if builders else " (a method's own ops need its space's latency_op as a builder)"
    raise ValueError(f"{config.key}: unknown op {config.op!r}; known: {', '.join(known)}{hint}")
