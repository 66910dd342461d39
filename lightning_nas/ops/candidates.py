"""The named candidate operations of cell-based search spaces, ``C`` channels in and out.

Cell-based methods pick their candidate set from these names (the common vocabulary of
``quark0/darts:cnn/operations.py`` and the methods that followed it): their ``genotype.py`` lists
the names, in architecture-parameter column order, and their ``ops.py`` builds them here.
Pooling ops come bare (a search network appends ``BatchNorm2d(C, affine=False)`` itself);
``none`` is the zero op of a relaxed edge.

Example:
    >>> import torch
    >>> op = make_cell_op("sep_conv_3x3", C=4, stride=2)
    >>> tuple(op(torch.randn(2, 4, 9, 9)).shape)
    (2, 4, 5, 5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from lightning_nas.ops.basic import Identity, Zero
from lightning_nas.ops.conv import AtrousConv, DilConv, FactorizedReduce, SepConv

__all__ = ["CELL_OPS", "make_cell_op"]


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


CELL_OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
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
    "atrous_conv_3x3": lambda C, stride, affine: AtrousConv(C, C, 3, stride, 2, affine=affine),
    "atrous_conv_5x5": lambda C, stride, affine: AtrousConv(C, C, 5, stride, 2, affine=affine),
}
"""Name → ``(C, stride, affine) -> module``. ``sep_conv_KxK``: two ReLU–depthwise–pointwise–BN
layers; ``dil_conv_KxK``: one dilated (rate 2) separable layer; ``atrous_conv_KxK``: a *full*
K×K conv with rate 2; ``skip_connect`` at stride 2: :class:`FactorizedReduce`."""


def make_cell_op(
    name: str,
    C: int,
    stride: int,
    affine: bool = True,
    choices: Sequence[str] | None = None,
) -> nn.Module:
    """Build the candidate operation ``name`` with ``C`` input and output channels.

    Args:
        name: A key of :data:`CELL_OPS` (and of ``choices``).
        C: Input and output channels.
        stride: 1, or 2 for the input edges of a reduction cell.
        affine: Whether BatchNorm layers have learnable scale and shift (``False`` in a search
            network, ``True`` in derived networks).
        choices: The method's candidate set (for the error message and the check); default
            every name of :data:`CELL_OPS`.

    Returns:
        The operation; it maps ``(N, C, H, W)`` to ``(N, C, ceil(H / stride), ceil(W / stride))``.

    Raises:
        ValueError: If ``name`` is not among ``choices`` or ``stride`` is not 1 or 2.
    """
    choices = tuple(CELL_OPS) if choices is None else tuple(choices)
    if name not in choices or name not in CELL_OPS:
        raise ValueError(f"unknown op {name!r}; expected one of {', '.join(choices)}")
    if stride not in (1, 2):
        raise ValueError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return CELL_OPS[name](C, stride, affine)
