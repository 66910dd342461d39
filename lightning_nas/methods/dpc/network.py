"""The dense prediction cell, its segmentation head, and a DPC segmentation network.

Follows the official TensorFlow release (``tensorflow/models``, ``research/deeplab/core/``:
``dense_prediction_cell.py`` ``build_cell`` @ ``52e2952``; ``model.py``, which sets
``conv_rate_multiplier = 16 // output_stride`` and puts a 1×1 classifier with bias on the cell).
Bilinear resizes use ``align_corners=True``, as DeepLab's ``resize_bilinear`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError, check_min_ints
from lightning_nas.genotypes import load
from lightning_nas.methods.dpc.genotype import DPCGenotype
from lightning_nas.methods.dpc.ops import BN_EPS, BN_MOMENTUM, Conv1x1BNReLU, make_dpc_op

__all__ = ["DPCCell", "DPCHead", "DPCNetwork"]


def _as_genotype(genotype: DPCGenotype | str | Path, owner: str) -> DPCGenotype:
    if isinstance(genotype, str | Path):
        genotype = load(genotype)
    if not isinstance(genotype, DPCGenotype):
        raise ConfigError(
            f"{owner}: expected a DPCGenotype or its file, got {type(genotype).__name__}"
        )
    return genotype


def _check_output_stride(owner: str, output_stride: int) -> None:
    if output_stride not in (8, 16):
        raise ConfigError(f"{owner}: output_stride must be 8 or 16, got {output_stride!r}")


def _check_keep(owner: str, dropout_keep: float) -> None:
    if not 0.0 < dropout_keep <= 1.0:
        raise ConfigError(f"{owner}: dropout_keep must be in (0, 1], got {dropout_keep!r}")


class DPCCell(nn.Module):
    """A dense prediction cell (the release's ``DensePredictionCell.build_cell``).

    Branch ``i`` applies its operation to the input feature (``input = -1``) or to the output
    of branch ``input``; every operation outputs ``channels`` (the release's
    ``reduction_size = 256``). The branches are concatenated (``B · channels``) → dropout
    (keep probability ``dropout_keep``, in training) → 1×1 ``concat_projection`` to ``channels``
    → BN → ReLU. Rates of ``sep_conv3x3`` are multiplied by ``16 // output_stride``.

    Args:
        genotype: The cell, or the path of its YAML file.
        in_channels: Channels of the backbone feature.
        channels: Output channels of every branch and of the projection.
        dropout_keep: Keep probability of the dropout on the concatenated features.
        output_stride: Output stride of the backbone feature (8 or 16).
        bn_momentum: BatchNorm momentum (PyTorch convention; the release's decay 0.9997).
        bn_eps: BatchNorm epsilon.

    Raises:
        ConfigError: If an argument is out of range or ``genotype`` is not a DPC genotype.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> cell = DPCCell("experiments/genotypes/dpc_cityscapes.yaml", in_channels=8, channels=16)
        >>> tuple(cell(torch.randn(2, 8, 9, 9)).shape)
        (2, 16, 9, 9)
    """

    def __init__(
        self,
        genotype: DPCGenotype | str | Path,
        in_channels: int,
        channels: int = 256,
        dropout_keep: float = 0.9,
        output_stride: Literal[8, 16] = 16,
        bn_momentum: float = BN_MOMENTUM,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        genotype = _as_genotype(genotype, "DPCCell")
        check_min_ints("DPCCell", (("in_channels", in_channels, 1), ("channels", channels, 1)))
        _check_keep("DPCCell", dropout_keep)
        _check_output_stride("DPCCell", output_stride)
        self.genotype = genotype
        self.rate_multiplier = 16 // output_stride
        self.inputs: tuple[int, ...] = tuple(inp for inp, _, _ in genotype.branches)
        self.branches = nn.ModuleList(
            make_dpc_op(
                op,
                args,
                in_channels if inp < 0 else channels,
                channels,
                self.rate_multiplier,
                bn_momentum,
                bn_eps,
            )
            for inp, op, args in genotype.branches
        )
        self.dropout = nn.Dropout(p=1.0 - dropout_keep)
        self.concat_projection = Conv1x1BNReLU(
            len(self.branches) * channels, channels, bn_momentum, bn_eps
        )

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of every branch, in order (each ``(N, channels, h, w)``)."""
        outputs: list[torch.Tensor] = []
        for inp, branch in zip(self.inputs, self.branches, strict=True):
            outputs.append(branch(x if inp < 0 else outputs[inp]))
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The cell's output ``(N, channels, h, w)`` at the input's spatial size."""
        concat = torch.cat(self.forward_branches(x), dim=1)
        return self.concat_projection(self.dropout(concat))


class DPCHead(nn.Module):
    """A :class:`DPCCell` and a 1×1 classifier (with bias): logits at the feature resolution.

    What the proxy task trains on cached backbone features. The classifier is initialised as
    the release's ``get_branch_logits`` (truncated normal, standard deviation 0.01; zero bias).

    Args:
        genotype: The cell, or the path of its YAML file.
        num_classes: Number of output classes.
        in_channels: Channels of the backbone feature (320 for MobileNet-v2, 2048 for Xception).
        channels: Channels inside the cell.
        dropout_keep: Keep probability of the cell's concat dropout.
        output_stride: Output stride of the backbone feature (8 or 16).
        bn_momentum: BatchNorm momentum (PyTorch convention; the release's decay 0.9997).
        bn_eps: BatchNorm epsilon.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> head = DPCHead("experiments/genotypes/dpc_cityscapes.yaml", 19, 320, channels=16)
        >>> tuple(head(torch.randn(2, 320, 9, 9)).shape)
        (2, 19, 9, 9)
    """

    def __init__(
        self,
        genotype: DPCGenotype | str | Path,
        num_classes: int = 19,
        in_channels: int = 320,
        channels: int = 256,
        dropout_keep: float = 0.9,
        output_stride: Literal[8, 16] = 16,
        bn_momentum: float = BN_MOMENTUM,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        check_min_ints("DPCHead", (("num_classes", num_classes, 1),))
        self.cell = DPCCell(
            _as_genotype(genotype, "DPCHead"),
            in_channels,
            channels,
            dropout_keep,
            output_stride,
            bn_momentum,
            bn_eps,
        )
        self.genotype = self.cell.genotype
        self.num_classes = num_classes
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        nn.init.trunc_normal_(self.classifier.weight, std=0.01, a=-0.02, b=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, h, w)`` at the feature's spatial size."""
        return self.classifier(self.cell(features))


class DPCNetwork(nn.Module):
    """A DPC segmentation network: an smp encoder, a :class:`DPCHead`, bilinear upsampling.

    The encoder is ``segmentation_models_pytorch.encoders.get_encoder(encoder_name,
    in_channels, depth=encoder_depth, weights=encoder_weights, output_stride=output_stride)``;
    smp dilates its last stages so that its last feature has the output stride asked for. The
    default ``tu-mobilenetv2_100`` (timm's MobileNet-v2) gives at depth 5 a **320-channel**
    feature at OS 16 (its last inverted-residual block, DeepLab's MobileNet-v2 feature; smp's
    own ``mobilenet_v2`` adds the 1×1 conv to 1280 channels). The DPC runs on that last
    feature; its logits are resized (bilinear, ``align_corners=True``) to the input size.

    Args:
        genotype: The cell, or the path of its YAML file.
        num_classes: Number of output classes (linked from the DataModule by the CLI; default
            19, Cityscapes).
        encoder_name: An smp encoder name (``tu-<timm name>`` for any timm model).
        encoder_weights: Pretrained weights of the encoder (``None``: random; anything else
            downloads).
        in_channels: Number of input image channels.
        encoder_depth: Number of encoder stages; the cell reads the last one, whose stride
            must reach ``output_stride`` (``2 ** encoder_depth >= output_stride``).
        output_stride: Output stride of the encoder's last feature (8 or 16); the cell's rates
            are multiplied by ``16 // output_stride``.
        channels: Channels inside the cell (the release's 256).
        dropout_keep: Keep probability of the cell's concat dropout.
        bn_momentum: BatchNorm momentum of the cell (PyTorch convention; the release's decay
            0.9997). The encoder keeps its own BatchNorm settings.
        bn_eps: BatchNorm epsilon of the cell.

    Raises:
        ConfigError: If an argument is out of range or ``genotype`` is not a DPC genotype.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = DPCNetwork("experiments/genotypes/dpc_cityscapes.yaml", num_classes=5,
        ...                  channels=16)
        >>> net.encoder.out_channels[-1], net.output_stride
        (320, 16)
        >>> tuple(net.eval()(torch.randn(1, 3, 64, 64)).shape)
        (1, 5, 64, 64)
    """

    def __init__(
        self,
        genotype: DPCGenotype | str | Path,
        num_classes: int = 19,
        encoder_name: str = "tu-mobilenetv2_100",
        encoder_weights: str | None = None,
        in_channels: int = 3,
        encoder_depth: int = 5,
        output_stride: Literal[8, 16] = 16,
        channels: int = 256,
        dropout_keep: float = 0.9,
        bn_momentum: float = BN_MOMENTUM,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        genotype = _as_genotype(genotype, "DPCNetwork")
        check_min_ints(
            "DPCNetwork",
            (
                ("num_classes", num_classes, 1),
                ("in_channels", in_channels, 1),
                ("encoder_depth", encoder_depth, 1),
            ),
        )
        _check_output_stride("DPCNetwork", output_stride)
        if 2**encoder_depth < output_stride:
            raise ConfigError(
                f"DPCNetwork: encoder_depth {encoder_depth} ends at stride {2**encoder_depth}; "
                f"expected a depth of at least {output_stride.bit_length() - 1} for output_stride "
                f"{output_stride}"
            )
        import segmentation_models_pytorch as smp  # here: the cell and head alone need no smp

        self.encoder = smp.encoders.get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            output_stride=output_stride,
        )
        self.genotype = genotype
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.head = DPCHead(
            genotype,
            num_classes,
            self.encoder.out_channels[-1],
            channels,
            dropout_keep,
            output_stride,
            bn_momentum,
            bn_eps,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size."""
        logits = self.head(self.encoder(x)[-1])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)
