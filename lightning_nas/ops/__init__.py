"""Building blocks shared by every method, each defined once.

* :mod:`~lightning_nas.ops.conv` — conv-norm-act blocks: :class:`ReLUConvBN`,
  :class:`SepConv` (separable), :class:`DilConv` (dilated separable), :class:`AtrousConv`
  (full atrous), :class:`FactorizedReduce`, :class:`ConvNorm`.
* :mod:`~lightning_nas.ops.slimmable` — :class:`SlimConv2d`, :class:`SlimBatchNorm2d` (one set of
  weights run at any leading slice of its widths).
* :mod:`~lightning_nas.ops.basic` — :class:`Identity`, :class:`Zero`, :func:`drop_path`,
  :func:`resize` / :class:`Resize`, :class:`Add`, :class:`Concat`, :func:`ceil_div`.

Operations that only one method uses (and its candidate-operation tables) live in that method's
``ops.py`` under :mod:`lightning_nas.methods`.
"""

from lightning_nas.ops.basic import Add, Concat, Identity, Resize, Zero, ceil_div, drop_path, resize
from lightning_nas.ops.conv import (
    AtrousConv,
    ConvNorm,
    DilConv,
    FactorizedReduce,
    ReLUConvBN,
    SepConv,
)
from lightning_nas.ops.slimmable import SlimBatchNorm2d, SlimConv2d

__all__ = [
    "Add",
    "AtrousConv",
    "Concat",
    "ConvNorm",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "ReLUConvBN",
    "Resize",
    "SepConv",
    "SlimBatchNorm2d",
    "SlimConv2d",
    "Zero",
    "ceil_div",
    "drop_path",
    "resize",
]
