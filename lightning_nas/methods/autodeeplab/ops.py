"""Auto-DeepLab's candidate operations: :data:`AUTODEEPLAB_PRIMITIVES` from the shared cell ops.

``sep_conv_KxK`` is the release's ``separable_KxK_2`` (the same layers as DARTS' SepConv) and
``atrous_conv_KxK`` its ``atrous_KxK`` (a *full* K×K conv with rate 2); see
:mod:`lightning_nas.ops.candidates`.
"""

from __future__ import annotations

from torch import nn

from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES
from lightning_nas.ops.candidates import make_cell_op

__all__ = ["AUTODEEPLAB_PRIMITIVES", "make_autodeeplab_op"]


def make_autodeeplab_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    """Build the Auto-DeepLab operator ``name`` (one of :data:`AUTODEEPLAB_PRIMITIVES`).

    Same conventions as :func:`lightning_nas.ops.candidates.make_cell_op` (pools come bare;
    ``C`` in and out channels).

    Raises:
        ValueError: If ``name`` is unknown or ``stride`` is not 1 or 2.
    """
    return make_cell_op(name, C, stride, affine, choices=AUTODEEPLAB_PRIMITIVES)
