"""SM-NAS's genotype: a whole segmentation pipeline (torch-free, validated, versioned).

Stage 1 (structural) picks an smp encoder by name, an smp decoder (architecture), the encoder
depth, the output stride where the decoder dilates, and the input resolution. Stage 2 (modular)
keeps the decoder and the resolution and replaces the encoder by a coded ResNet-style encoder
(``encoder: coded``, ``base_width`` + ``code``, see :mod:`~lightning_nas.methods.smnas.code`),
with the decoder's width and the normalisation (``bn``, or ``gn_ws``: GroupNorm + Weight
Standardisation, for training from scratch) searched too.

Example:
    >>> g = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64))
    >>> g.stage, g.to_dict()["input_size"]
    (1, [64, 64])
    >>> SMNASGenotype(encoder="coded", decoder="Unet", input_size=(64, 64), base_width=64,
    ...               code="11-21-21-21", decoder_channels=128).stage
    2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lightning_nas.genotypes import Genotype, field_error, type_name, value_repr
from lightning_nas.methods.smnas.code import validate_code

__all__ = [
    "CODED",
    "DECODERS",
    "DEFAULT_OUTPUT_STRIDE",
    "GN_GROUPS",
    "MAX_DECODER_CHANNELS",
    "MAX_INPUT_SIDE",
    "NORMS",
    "OUTPUT_STRIDES",
    "SMNASGenotype",
    "dilated_stride",
]

DECODERS: tuple[str, ...] = (
    "Unet",
    "UnetPlusPlus",
    "FPN",
    "PSPNet",
    "DeepLabV3",
    "DeepLabV3Plus",
    "PAN",
    "Linknet",
    "MAnet",
    "UPerNet",
    "Segformer",
)
"""The smp architectures (class names of ``segmentation_models_pytorch``)."""
OUTPUT_STRIDES: dict[str, tuple[int, ...]] = {
    "DeepLabV3": (8, 16),
    "DeepLabV3Plus": (8, 16),
    "PAN": (16, 32),
}
"""The decoders that dilate their encoder, and the output strides smp 0.6 accepts for each."""

DEFAULT_OUTPUT_STRIDE: dict[str, int] = {"DeepLabV3": 8, "DeepLabV3Plus": 16, "PAN": 16}
"""smp 0.6's ``encoder_output_stride`` default of each dilating decoder."""


def dilated_stride(decoder: str, requested: int | None) -> int | None:
    """The output stride a candidate of ``decoder`` gets.

    ``None`` for a decoder that does not dilate, ``requested`` when the decoder takes it, else
    the decoder's default.

    Example:
        >>> dilated_stride("PAN", 8), dilated_stride("DeepLabV3Plus", 8), dilated_stride("FPN", 8)
        (16, 8, None)
    """
    if decoder not in OUTPUT_STRIDES:
        return None
    return requested if requested in OUTPUT_STRIDES[decoder] else DEFAULT_OUTPUT_STRIDE[decoder]


CODED = "coded"
"""``encoder`` of a stage-2 genotype: the coded ResNet-style encoder."""
NORMS: tuple[str, ...] = ("bn", "gn_ws")
GN_GROUPS = 8
"""GroupNorm groups of ``norm: gn_ws`` (every width of a coded encoder must be a multiple)."""


MAX_INPUT_SIDE = 8192
"""Largest side of ``input_size`` (Cityscapes' full resolution is 1024×2048)."""
MAX_DECODER_CHANNELS = 4096
"""Largest ``decoder_channels`` (as the widths of a coded encoder,
:func:`~lightning_nas.methods.smnas.code.validate_code`)."""

_MAX_CODE_LENGTH = 200


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SMNASGenotype(Genotype):
    """An SM-NAS candidate: encoder × decoder × input size (stage 1), or a coded encoder (stage 2).

    Args:
        encoder: An smp encoder name (``resnet18``, ``mobilenet_v2``, ``tu-regnety_002``, ...), or
            ``coded`` for a stage-2 encoder.
        decoder: One of :data:`DECODERS`.
        input_size: ``(H, W)`` the candidate is trained and timed at.
        encoder_depth: Encoder stages used (3..5).
        output_stride: 8 or 16 for decoders that dilate the encoder (``None``: their default).
        base_width: Stage 2: the coded encoder's base width.
        code: Stage 2: the coded encoder's block code (e.g. ``"11-21-21-21"``).
        decoder_channels: Stage 2: the decoder's width (``None``: smp's default).
        norm: ``bn`` or ``gn_ws`` (GroupNorm + Weight Standardisation; coded encoders only).
    """

    kind: ClassVar[str] = "smnas"
    version: ClassVar[int] = 1
    network: ClassVar[str] = "lightning_nas.methods.smnas.network.SMNASNetwork"
    drawing: ClassVar[str | None] = "lightning_nas.methods.smnas.draw.draw"
    random_space: ClassVar[str | None] = "lightning_nas.methods.smnas.sampling.random_space"

    encoder: str
    decoder: str
    input_size: tuple[int, int]
    encoder_depth: int = 5
    output_stride: int | None = None
    base_width: int | None = None
    code: str | None = None
    decoder_channels: int | None = None
    norm: str = "bn"

    @property
    def stage(self) -> int:
        """1 for a stock smp encoder, 2 for a coded one."""
        return 2 if self.encoder == CODED else 1

    @property
    def label(self) -> str:
        """A short name for plots and tables, e.g. ``resnet18+FPN@64x64``, ``…+PAN/os16@…``."""
        enc = f"{self.base_width}:{self.code}" if self.stage == 2 else self.encoder
        dec = self.decoder + (f"/os{self.output_stride}" if self.output_stride else "")
        return f"{enc}+{dec}@{self.input_size[0]}x{self.input_size[1]}"

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        size = fields["input_size"]
        if not isinstance(size, list | tuple):
            raise field_error(source, "input_size", f"got {type_name(size)}; expected [H, W]")
        return {**fields, "input_size": tuple(size)}

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        encoder, decoder = fields["encoder"], fields["decoder"]
        if (
            not isinstance(encoder, str)
            or not encoder
            or len(encoder) > 200
            or not encoder.isprintable()
            or any(c.isspace() for c in encoder)
        ):
            raise field_error(
                source,
                "encoder",
                f"got {value_repr(encoder)}; expected an smp encoder name (no spaces)",
            )
        if decoder not in DECODERS:
            raise field_error(
                source, "decoder", f"unknown decoder {value_repr(decoder)}; expected one of "
                + ", ".join(DECODERS)
            )  # fmt: skip
        size = fields["input_size"]
        if len(size) != 2 or not all(_is_int(v) and 1 <= v <= MAX_INPUT_SIDE for v in size):
            raise field_error(
                source,
                "input_size",
                f"got {value_repr(list(size))}; expected [H, W], integers 1..{MAX_INPUT_SIDE}",
            )
        depth = fields["encoder_depth"]
        if not _is_int(depth) or not 3 <= depth <= 5:
            raise field_error(
                source, "encoder_depth", f"got {value_repr(depth)}; expected 3, 4 or 5"
            )
        stride = fields["output_stride"]
        if stride is not None and (not _is_int(stride) or stride not in (8, 16, 32)):
            raise field_error(
                source, "output_stride", f"got {value_repr(stride)}; expected 8, 16, 32 or null"
            )
        norm = fields["norm"]
        if norm not in NORMS:
            raise field_error(
                source, "norm", f"got {value_repr(norm)}; expected one of {', '.join(NORMS)}"
            )
        channels = fields["decoder_channels"]
        if channels is not None and (
            not _is_int(channels) or not 1 <= channels <= MAX_DECODER_CHANNELS
        ):
            raise field_error(
                source,
                "decoder_channels",
                f"got {value_repr(channels)}; expected an integer 1..{MAX_DECODER_CHANNELS} "
                "or null",
            )
        base, code = fields["base_width"], fields["code"]
        if encoder == CODED:
            if base is None or code is None:
                raise field_error(
                    source, "code", "a coded encoder needs base_width and code (stage 2)"
                )
            if not _is_int(base) or base < 1:
                raise field_error(
                    source, "base_width", f"got {value_repr(base)}; expected a positive integer"
                )
            if not isinstance(code, str) or len(code) > _MAX_CODE_LENGTH:
                raise field_error(
                    source,
                    "code",
                    f"got {value_repr(code)}; expected a string of at most {_MAX_CODE_LENGTH} "
                    "characters such as '11-21-21-21'",
                )
            try:
                validate_code(code, base, GN_GROUPS if norm == "gn_ws" else None)
            except ValueError as err:
                raise field_error(source, "code", str(err)) from None
        else:
            for key in ("base_width", "code"):
                if fields[key] is not None:
                    raise field_error(
                        source, key, f"got {value_repr(fields[key])} with encoder "
                        f"{value_repr(encoder)}; expected "
                        "null (only a coded encoder has one)"
                    )  # fmt: skip
            if norm != "bn":
                raise field_error(
                    source, "norm", f"{value_repr(norm)} needs a coded encoder; expected bn"
                )
