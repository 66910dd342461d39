"""The network of an SM-NAS genotype: the smp model it describes, built and checked.

:class:`SMNASNetwork` is what :func:`lightning_nas.genotypes.build_network` builds for an
:class:`~lightning_nas.methods.smnas.genotype.SMNASGenotype` and what ``lightning fit`` retrains
(``lightning_nas.networks.SMNASNetwork`` in YAML).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.genotypes import load
from lightning_nas.methods.smnas.genotype import SMNASGenotype
from lightning_nas.methods.smnas.structural import build_model, output_stride

__all__ = ["SMNASNetwork"]


class SMNASNetwork(nn.Module):
    """An SM-NAS genotype as a segmentation network (an smp encoder-decoder model).

    The model is :func:`~lightning_nas.methods.smnas.structural.build_model`'s (``self.model``),
    checked at build time to give logits of ``genotype.input_size``. Inputs of other sizes are
    zero-padded at the bottom and right to a multiple of the network's output stride (smp
    refuses other sizes) and the logits cropped back, so validation on whole images of any size
    works.

    Args:
        genotype: The genotype, or the path of its YAML file.
        num_classes: Number of output classes (linked from the DataModule by the CLI; default
            19, Cityscapes).
        in_channels: Number of input image channels.
        encoder_weights: smp's ``encoder_weights``; ``None`` (random initialisation) offline.
        resize_input: Run at the genotype's ``input_size`` whatever the input's size (resize
            in, logits resized back); ``False``: run at the input's own size.

    Raises:
        ConfigError: If ``genotype`` (or the file) is not an SM-NAS genotype, or an argument is
            out of range.
        InvalidCandidate: (a ``ConfigError``) If smp 0.6 cannot build the genotype right (see
            :func:`~lightning_nas.methods.smnas.structural.static_reason`).

    Example:
        >>> import torch
        >>> g = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64))
        >>> net = SMNASNetwork(g, num_classes=5)
        >>> tuple(net(torch.randn(2, 3, 64, 64)).shape), tuple(net(torch.randn(1, 3, 50, 70)).shape)
        ((2, 5, 64, 64), (1, 5, 50, 70))
    """

    def __init__(
        self,
        genotype: SMNASGenotype | str | Path,
        num_classes: int = 19,
        in_channels: int = 3,
        encoder_weights: str | None = None,
        resize_input: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(genotype, str | Path):
            genotype = load(genotype)
        if not isinstance(genotype, SMNASGenotype):
            raise ConfigError(
                "SMNASNetwork: expected an SMNASGenotype or its file, got "
                f"{type(genotype).__name__}"
            )
        check_min_ints(
            "SMNASNetwork", (("num_classes", num_classes, 1), ("in_channels", in_channels, 1))
        )
        self.genotype = genotype
        self.num_classes = num_classes
        self.resize_input = resize_input
        self.model = build_model(genotype, num_classes, in_channels, encoder_weights)

    @property
    def output_stride(self) -> int:
        """Input size divided by the size of the deepest feature the decoder receives."""
        return output_stride(self.genotype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size.

        The network runs at the genotype's ``input_size`` (SM-NAS searches the input
        resolution, as a detector's): an input of another size is resized (bilinear) to it and
        the logits back, unless ``resize_input`` is off.
        """
        h, w = x.shape[-2:]
        size = tuple(self.genotype.input_size)
        if self.resize_input and (h, w) != size:
            logits = self._forward_padded(
                F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            )
            return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return self._forward_padded(x)

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        stride = self.output_stride
        pad_h, pad_w = -h % stride, -w % stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.model(x)
        return logits[..., :h, :w]
