"""SM-NAS stage 2's coded ResNet-style encoder, usable by every smp decoder.

:class:`CodedResNetEncoder` builds the encoder a code describes (see
:mod:`~lightning_nas.methods.smnas.code`): a ResNet stem (7×7 conv, stride 2, then a 3×3 max-pool),
then four stages of BasicBlocks whose output widths the code's digits give. The first block of
stages 2–4 has stride 2, so the features are at strides 2, 4, 8, 16, 32 whatever the code, and
smp's decoders that dilate (DeepLabV3/V3+, PAN) turn stages 3–4 into atrous stages for output
stride 16 or 8, as they do with smp's own ResNet encoder.

``norm="bn"`` uses ``nn.Conv2d`` + ``nn.BatchNorm2d``; ``norm="gn_ws"`` (GroupNorm + Weight
Standardisation, SM-NAS's recipe for training from scratch) uses ``timm.layers.StdConv2d`` for
every convolution and ``nn.GroupNorm(GN_GROUPS, width)`` for every norm. The ReLUs stay separate
modules in both (not timm's ``GroupNormAct``), so the two variants have the same module tree.

Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1``..``layer4``, blocks'
``conv1``/``bn1``/``conv2``/``bn2``/``downsample``): with base width 64 and BatchNorm, the codes of
:data:`~lightning_nas.methods.smnas.code.BASE_CODES` for ResNet-18/34 are torchvision's networks,
and their state dicts load as they are (``fc.*`` is dropped).

:func:`register_coded_encoder` enters a code in smp's encoder table, so that
``smp.create_model(arch, encoder_name=name, encoder_weights=None)`` builds any decoder on it.

Example:
    >>> import torch
    >>> enc = CodedResNetEncoder(16, "1-21-21-12")
    >>> enc.out_channels
    [3, 16, 16, 32, 64, 128]
    >>> [tuple(f.shape[1:]) for f in enc(torch.randn(1, 3, 64, 64))][1:]
    [(16, 32, 32), (16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
    >>> import segmentation_models_pytorch as smp
    >>> name = register_coded_encoder(16, "1-21-21-12", norm="gn_ws")
    >>> name
    'smnas_coded_gn_ws_16_1-21-21-12'
    >>> model = smp.create_model("DeepLabV3Plus", encoder_name=name, encoder_weights=None,
    ...                          classes=3, encoder_output_stride=16).eval()
    >>> tuple(model(torch.randn(1, 3, 64, 64)).shape)
    (1, 3, 64, 64)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from segmentation_models_pytorch.encoders import encoders as smp_encoders
from segmentation_models_pytorch.encoders._base import EncoderMixin
from timm.layers import StdConv2d
from torch import nn

from lightning_nas.methods.smnas.code import block_widths, validate_code
from lightning_nas.methods.smnas.genotype import CODED, GN_GROUPS, NORMS, SMNASGenotype

__all__ = [
    "CodedBasicBlock",
    "CodedResNetEncoder",
    "coded_encoder_name",
    "register_coded_encoder",
]

Norm = Literal["bn", "gn_ws"]


def _validate(code: str, base_width: int, norm: object) -> None:
    """``validate_code`` (with ``GN_GROUPS`` for gn_ws), plus the norm and the stem's width."""
    if norm not in NORMS:
        raise ValueError(f"code {code!r}: norm {norm!r}; expected one of {', '.join(NORMS)}")
    groups = GN_GROUPS if norm == "gn_ws" else None
    validate_code(code, base_width, groups=groups)
    # validate_code checks the blocks' widths; the stem's (= base) width needs its own check
    # when the first block doubles (e.g. base 12, "21-21-21-21": blocks 24..384, stem 12).
    if groups and base_width % groups:
        raise ValueError(
            f"code {code!r} with base {base_width}: stem width {base_width} is not divisible by "
            f"{groups} GroupNorm groups"
        )


def _conv(norm: Norm, in_width: int, width: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free conv with padding ``kernel_size // 2``, weight-standardised for gn_ws."""
    conv = StdConv2d if norm == "gn_ws" else nn.Conv2d
    return conv(in_width, width, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


def _norm(norm: Norm, width: int) -> nn.Module:
    """``BatchNorm2d(width)``, or ``GroupNorm(GN_GROUPS, width)`` for gn_ws."""
    return nn.GroupNorm(GN_GROUPS, width) if norm == "gn_ws" else nn.BatchNorm2d(width)


class CodedBasicBlock(nn.Module):
    """ResNet's BasicBlock (torchvision's layout) with free input and output widths.

    Two 3×3 convs (the first strided) each followed by a norm, ReLU between them and after the
    sum; the shortcut is the identity, or a 1×1 conv (strided) + norm when the width or the
    stride changes.

    Args:
        in_width: Input channels.
        width: Output channels.
        stride: Stride of the first conv and of the projection.
        norm: ``bn`` or ``gn_ws``.
    """

    def __init__(self, in_width: int, width: int, stride: int = 1, norm: Norm = "bn") -> None:
        super().__init__()
        self.conv1 = _conv(norm, in_width, width, 3, stride)
        self.bn1 = _norm(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(norm, width, width, 3)
        self.bn2 = _norm(norm, width)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_width != width:
            self.downsample = nn.Sequential(
                _conv(norm, in_width, width, 1, stride), _norm(norm, width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class CodedResNetEncoder(nn.Module, EncoderMixin):
    """An smp encoder built from an SM-NAS stage-2 code (BasicBlocks, widths from the code).

    Only the stages ``depth`` uses are built (a shallower encoder has fewer parameters, and none
    unused under DDP); the unbuilt ``layer{n}`` are parameter-free placeholders.

    Args:
        base_width: Width of the stem and running width at the start of stage 1.
        code: The block code, e.g. ``"11-21-21-21"`` (ResNet-18 with base width 64).
        norm: ``bn`` (BatchNorm) or ``gn_ws`` (GroupNorm of
            :data:`~lightning_nas.methods.smnas.genotype.GN_GROUPS` groups + Weight
            Standardisation).
        depth: Stages returned, 1..5 (``forward`` returns ``depth + 1`` features).
        in_channels: Input channels.
        output_stride: 32, or 16 / 8 to dilate stages 4 / 3–4 now (smp's ``get_encoder`` does it
            too, after building; doing it twice is harmless).

    Raises:
        ValueError: One line: a code that does not parse or validate with ``base_width`` (for
            ``gn_ws`` every width, the stem's too, must be divisible by ``GN_GROUPS``), an
            unknown norm, a depth
            outside 1..5, an output stride other than 8, 16, 32, or bad ``in_channels``.
    """

    _is_torch_scriptable = True
    _is_torch_exportable = True
    _is_torch_compilable = True

    def __init__(
        self,
        base_width: int,
        code: str,
        norm: Norm = "bn",
        depth: int = 5,
        in_channels: int = 3,
        output_stride: int = 32,
    ) -> None:
        super().__init__()
        _validate(code, base_width, norm)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(f"CodedResNetEncoder: depth {depth!r}; expected 1..5")
        if output_stride not in (8, 16, 32) or isinstance(output_stride, bool):
            raise ValueError(
                f"CodedResNetEncoder: output_stride {output_stride!r}; expected 8, 16 or 32"
            )
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(
                f"CodedResNetEncoder: in_channels {in_channels!r}; expected a positive integer"
            )
        self.base_width = base_width
        self.code = code
        self.norm = norm
        self._depth = depth
        self._in_channels = in_channels
        self._output_stride = output_stride
        widths = block_widths(code, base_width)
        # A list: smp's ``set_in_channels`` concatenates ``[c] + _out_channels[1:]``.
        self._out_channels = [in_channels, base_width, *(stage[-1] for stage in widths)]

        self.conv1 = _conv(norm, in_channels, base_width, 7, 2)
        self.bn1 = _norm(norm, base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_width = base_width
        for n, stage in enumerate(widths, start=1):
            if n + 1 > depth:
                layer: nn.Module = nn.Identity()  # not built: never run (see forward)
            else:
                blocks = []
                for k, width in enumerate(stage):
                    stride = 2 if k == 0 and n > 1 else 1
                    blocks.append(CodedBasicBlock(in_width, width, stride, norm))
                    in_width = width
                layer = nn.Sequential(*blocks)
            setattr(self, f"layer{n}", layer)
        self._init_weights()
        if output_stride != 32:
            self.make_dilated(output_stride)

    def _init_weights(self) -> None:
        """Initialise as torchvision's ResNet: Kaiming-normal (fan-out) convs, norms 1 and 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def get_stages(self) -> dict[int, Sequence[nn.Module]]:
        """The stages smp's ``make_dilated`` turns atrous: stride → modules (built ones only)."""
        return {
            stride: [getattr(self, f"layer{n}")]
            for stride, n in ((16, 3), (32, 4))
            if n + 1 <= self._depth
        }

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input, then one feature per stage down to ``depth`` (strides 2, 4, 8, 16, 32)."""
        features = [x]
        if self._depth >= 1:
            x = self.relu(self.bn1(self.conv1(x)))
            features.append(x)
        if self._depth >= 2:
            x = self.layer1(self.maxpool(x))
            features.append(x)
        if self._depth >= 3:
            x = self.layer2(x)
            features.append(x)
        if self._depth >= 4:
            x = self.layer3(x)
            features.append(x)
        if self._depth >= 5:
            x = self.layer4(x)
            features.append(x)
        return features

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """``nn.Module.load_state_dict`` ignoring a classifier's ``fc.*`` (torchvision weights)."""
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _encoder_name(base_width: int, code: str, norm: str) -> str:
    return f"smnas_coded_{norm}_{base_width}_{code}"


def register_coded_encoder(base_width: int, code: str, norm: Norm = "bn") -> str:
    """Enter a coded encoder in smp's encoder table (idempotent) and return its name.

    The name is ``smnas_coded_{norm}_{base_width}_{code}``, e.g.
    ``smnas_coded_gn_ws_64_11-21-21-21`` (smp only special-cases names starting ``tu-`` /
    ``timm-``; ``-`` elsewhere is fine). The entry has no pretrained weights: build with
    ``encoder_weights=None`` (any other value raises smp's ``KeyError`` before downloading).
    The table lives in this process: register again in each new process (spawned workers,
    before ``smp.from_pretrained``).

    Raises:
        ValueError: The constructor's one-line message for an invalid code, base width or norm.
    """
    _validate(code, base_width, norm)
    name = _encoder_name(base_width, code, norm)
    params = {"base_width": base_width, "code": code, "norm": norm}
    entry = smp_encoders.get(name)
    if entry is not None:
        if entry["encoder"] is not CodedResNetEncoder or entry["params"] != params:
            raise ValueError(f"smp encoder {name!r} is already registered as something else")
        return name
    smp_encoders[name] = {
        "encoder": CodedResNetEncoder,
        "pretrained_settings": {},
        "params": params,
    }
    return name


def coded_encoder_name(genotype: SMNASGenotype) -> str:
    """The smp encoder name of a stage-2 genotype's coded encoder, registered.

    Raises:
        ValueError: If the genotype's encoder is not ``coded`` (stage 1).
    """
    if genotype.encoder != CODED:
        raise ValueError(
            f"genotype {genotype.label}: encoder {genotype.encoder!r} is not {CODED!r} (stage 1)"
        )
    # A validated stage-2 genotype has a base width, a code and a norm of NORMS.
    return register_coded_encoder(genotype.base_width, genotype.code, genotype.norm)
