"""DARTS' candidate operations: :data:`DARTS_PRIMITIVES` built from the shared cell ops.

The operations follow ``quark0/darts:cnn/operations.py`` exactly (same layer order, same padding,
``count_include_pad=False`` for average pooling); see :mod:`lightning_nas.ops.candidates`.

Example:
    >>> import torch
    >>> op = make_op("sep_conv_3x3", C=4, stride=2)
    >>> tuple(op(torch.randn(2, 4, 9, 9)).shape)
    (2, 4, 5, 5)
"""

from __future__ import annotations

from torch import nn

from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES
from lightning_nas.ops.candidates import make_cell_op

__all__ = ["DARTS_PRIMITIVES", "make_op"]


def make_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    """Build the DARTS candidate operation ``name`` with ``C`` input and output channels.

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
    return make_cell_op(name, C, stride, affine, choices=DARTS_PRIMITIVES)
