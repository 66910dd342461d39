"""SM-NAS stage 1 on smp 0.6: the curated encoder, decoder and input-size lists, and the builder.

:func:`static_reason` says, without building anything, why smp 0.6 cannot build a candidate or
would build it wrong (one line naming the pair and the rule; ``None`` when it can): the search
turns it into an Optuna constraint. :func:`build_model` builds the candidate with
``smp.create_model`` and checks that its logits have the input's size, raising
:class:`InvalidCandidate` otherwise. :func:`model_cost` gives its parameters and multiply-adds.

The rules (each observed by building every pair of :data:`ENCODERS` × :data:`DECODERS` with smp
0.6.0 and timm 1.0.31, and checked by ``tests/methods/smnas/test_structural.py``):

* ``mit_b*`` encoders: smp refuses them in UnetPlusPlus and Linknet, and in FPN below depth 5;
  their first stage's attention reduces its keys with an 8×8 stride-8 convolution at stride 4,
  so each input side must be at least 32.
* DeepLabV3/V3+ always, and PAN unless its output stride is 32, dilate the encoder: VGG,
  DenseNet, Xception, InceptionV4 and InceptionResNetV2 cannot be dilated (every other encoder
  of smp, ``mit_b*`` and the ``tu-`` ones of :data:`ENCODERS` included, can).
* Output strides: DeepLabV3/V3+ take 8 or 16 (default 8 / 16), PAN 16 or 32 (default 16); an
  output stride above the encoder's own (``2**encoder_depth``) has no effect and is refused, as
  is any output stride for the other decoders (they do not dilate).
* Silent traps (no error, logits of the wrong size): FPN below depth 5 (×2 at depth 4, ×4 at
  depth 3: it merges its four deepest features and upsamples ×4, right only when the finest of
  them is at stride 4), PSPNet at any depth but 3 (it upsamples ×8).
* Input sizes: each side divisible by the candidate's output stride (``2**encoder_depth``, or
  the dilated stride), except for Unet, which interpolates to its skips' sizes. PAN's Feature
  Pyramid Attention pools its deepest feature three times: each side ≥ 8 × its output stride
  (128 px at output stride 16, 256 at 32, 64 at depth 3).
* ``decoder_channels`` is the decoder's width, mapped to each decoder's keyword
  (:func:`decoder_kwargs`); FPN's GroupNorm(32) on its ``decoder_channels / 2`` segmentation
  channels needs a multiple of 64. Linknet has no width parameter: it ignores the value.

No decoder of the list ignores ``encoder_depth`` (all of them build at depths 3, 4 and 5 with the
rules above); the ones that ignore ``output_stride`` are every decoder but the dilating three.

Example:
    >>> g = SMNASGenotype(encoder="resnet18", decoder="PSPNet", input_size=(64, 64))
    >>> static_reason(g)  # doctest: +ELLIPSIS
    'PSPNet + resnet18: encoder_depth 5 gives logits of the wrong size in smp 0.6 (PSPNet ...'
    >>> model = build_model(SMNASGenotype(encoder="resnet18", decoder="FPN",
    ...                                   input_size=(64, 64)), num_classes=3)
    >>> cost = model_cost(model, (64, 64))
    >>> round(cost["params"], 2), round(cost["flops"], 3)
    (13.05, 0.278)
"""

from __future__ import annotations

import copy
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.errors import ConfigError
from lightning_nas.methods.smnas.genotype import (
    CODED,
    DECODERS,
    DEFAULT_OUTPUT_STRIDE,
    OUTPUT_STRIDES,
    SMNASGenotype,
)

__all__ = [
    "DECODERS",
    "DEFAULT_OUTPUT_STRIDE",
    "ENCODERS",
    "INPUT_SIZES",
    "NON_DILATABLE",
    "OUTPUT_STRIDES",
    "InvalidCandidate",
    "build_model",
    "decoder_kwargs",
    "model_cost",
    "output_stride",
    "static_reason",
]

ENCODERS: tuple[str, ...] = (
    "tu-mobilenetv3_small_100",
    "tu-regnety_002",
    "mobilenet_v2",
    "efficientnet-b0",
    "tu-convnext_atto",
    "mit_b0",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg11",
    "resnet101",
)
"""Stage 1's curated smp encoders, cheapest first (the encoder alone, depth 5, at 512×512).

========================== ======== ======= ==========================================
encoder                    params   GMACs   note
========================== ======== ======= ==========================================
tu-mobilenetv3_small_100   0.9 M    0.28    timm
tu-regnety_002             2.8 M    1.0     timm
mobilenet_v2               2.2 M    1.6     smp adds the 1×1 conv to 1280 channels
efficientnet-b0            4.0 M    1.9
tu-convnext_atto           3.4 M    2.9     timm; no stride-2 feature (0 channels)
mit_b0                     3.3 M    3.2     transformer; no stride-2 feature
resnet18 / 34 / 50 / 101   11–43 M  9.5–41  SM-NAS's family (9.5, 19, 21, 41 GMACs)
vgg11                      9.2 M    39      full-resolution convolutions, not dilatable
========================== ======== ======= ==========================================

All build offline with ``encoder_weights=None``.
"""

INPUT_SIZES: tuple[tuple[int, int], ...] = (
    (64, 64),
    (96, 96),
    (128, 128),
    (256, 256),
    (512, 512),
    (768, 768),
    (1024, 1024),
    (512, 1024),
    (768, 1536),
    (1024, 2048),
)
"""``(H, W)`` choices: squares from 64 to 1024 px and Cityscapes' 1:2 at 1/4, 3/8 and 1/2 scale.

Every side is a multiple of 32 (any output stride); PAN needs ≥ 128 px (≥ 256 at output stride
32), ``mit_b*`` ≥ 32 px.
"""

NON_DILATABLE: tuple[str, ...] = ("vgg", "densenet", "xception", "inceptionv4", "inceptionresnetv2")
"""Name prefixes of the smp encoders whose ``make_dilated`` raises (pooling downsampling)."""

_MIT = "mit_b"
_MIT_MIN_SIDE = 32
_PAN_MIN_CELLS = 8
_FPN_CHANNELS_MULTIPLE = 64
_UNET_WIDTH = 256
"""Width of the deepest block of Unet, UnetPlusPlus and MAnet (smp: 256, 128, 64, 32, 16)."""


class InvalidCandidate(ConfigError):
    """A candidate smp 0.6 cannot build, or builds with logits of the wrong size.

    A :class:`~lightning_nas.errors.ConfigError` (so a ``ValueError``), printed as one line by the
    CLI when a retrain config names such a genotype.

    Args:
        reason: One line naming the candidate and the rule it breaks.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _encoder_label(genotype: SMNASGenotype) -> str:
    if genotype.encoder == CODED:
        return f"coded {genotype.base_width}:{genotype.code}"
    return genotype.encoder


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def output_stride(genotype: SMNASGenotype) -> int:
    """The stride of the deepest feature the decoder receives.

    ``2**encoder_depth``, or for the dilating decoders the smaller of that and the genotype's
    output stride (smp's default when ``None``).

    Args:
        genotype: The candidate.

    Returns:
        The stride the input sides must be divisible by (except for Unet).
    """
    stride = 2**genotype.encoder_depth
    if genotype.decoder in OUTPUT_STRIDES:
        requested = genotype.output_stride or DEFAULT_OUTPUT_STRIDE[genotype.decoder]
        stride = min(stride, requested)
    return stride


def _known_encoder(name: str) -> bool:
    if name.startswith("tu-"):
        return timm.is_model(name[3:])
    # smp turns deprecated ``timm-`` names outside its table into ``tu-`` ones: left to the build
    return name.startswith("timm-") or name in smp.encoders.encoders


def _pair_reason(g: SMNASGenotype, pair: str) -> str | None:
    """The explicit encoder × decoder refusals of smp, and the silent traps."""
    enc, dec, depth = g.encoder, g.decoder, g.encoder_depth
    if enc != CODED and not _known_encoder(enc):
        return f"{pair}: unknown smp encoder {enc!r}"
    if enc.startswith(_MIT):
        if dec in ("UnetPlusPlus", "Linknet"):
            return f"{pair}: smp 0.6 does not support mit_b* encoders in {dec}"
        if dec == "FPN" and depth != 5:
            return f"{pair}: smp 0.6 supports mit_b* encoders in FPN at encoder_depth 5 only"
    if dec == "FPN" and depth != 5:
        return (
            f"{pair}: encoder_depth {depth} gives logits of the wrong size in smp 0.6 (FPN "
            "upsamples x4 from its 4th deepest feature, at stride 4 at depth 5 only); use "
            "encoder_depth 5"
        )
    if dec == "PSPNet" and depth != 3:
        return (
            f"{pair}: encoder_depth {depth} gives logits of the wrong size in smp 0.6 (PSPNet "
            "upsamples x8, right at depth 3 only); use encoder_depth 3"
        )
    return None


def _stride_reason(g: SMNASGenotype, pair: str) -> str | None:
    """Output strides each decoder accepts, and dilatable encoders."""
    dec, requested = g.decoder, g.output_stride
    if dec not in OUTPUT_STRIDES:
        if requested is not None:
            return (
                f"{pair}: output_stride {requested} is ignored ({dec} does not dilate its "
                "encoder); use null"
            )
        return None
    allowed = OUTPUT_STRIDES[dec]
    if requested is not None and requested not in allowed:
        return (
            f"{pair}: output_stride {requested} is not supported ({dec} takes "
            f"{' or '.join(map(str, allowed))})"
        )
    if requested is not None and requested > 2**g.encoder_depth:
        return (
            f"{pair}: output_stride {requested} is ignored at encoder_depth {g.encoder_depth} "
            f"(the encoder's stride is {2**g.encoder_depth}); use a smaller one or null"
        )
    stride = requested or DEFAULT_OUTPUT_STRIDE[dec]
    if stride != 32 and g.encoder.startswith(NON_DILATABLE):
        return (
            f"{pair}: {dec} needs a dilatable encoder (output stride {stride}); {g.encoder} is "
            "not (it downsamples by pooling)"
        )
    return None


def _size_reason(g: SMNASGenotype, pair: str) -> str | None:
    """Input sizes: divisibility by the output stride and the decoders' minimum sizes."""
    h, w = g.input_size
    size = f"{h}x{w}"
    stride = output_stride(g)
    if g.decoder != "Unet" and (h % stride or w % stride):
        return f"{pair}: input {size} must be divisible by the output stride {stride}"
    if g.decoder == "PAN" and min(h, w) < _PAN_MIN_CELLS * stride:
        return (
            f"{pair}: input {size} is too small; PAN needs each side >= {_PAN_MIN_CELLS} x "
            f"output stride {stride} = {_PAN_MIN_CELLS * stride}"
        )
    if g.encoder.startswith(_MIT) and min(h, w) < _MIT_MIN_SIDE:
        return (
            f"{pair}: input {size} is too small; mit_b* encoders need each side >= {_MIT_MIN_SIDE}"
        )
    return None


def _channels_reason(g: SMNASGenotype, pair: str) -> str | None:
    c = g.decoder_channels
    if g.decoder == "FPN" and c is not None and c % _FPN_CHANNELS_MULTIPLE:
        return (
            f"{pair}: decoder_channels {c} must be a multiple of {_FPN_CHANNELS_MULTIPLE} "
            "(FPN's GroupNorm(32) on decoder_channels / 2 segmentation channels)"
        )
    return None


def static_reason(genotype: SMNASGenotype) -> str | None:
    """Why smp 0.6 cannot build ``genotype`` right, found without building it.

    Fast (no model is built): the search calls it for every sampled candidate to set an Optuna
    constraint. :func:`build_model` raises with this reason first.

    Args:
        genotype: The candidate.

    Returns:
        One line naming the decoder + encoder pair and the rule it breaks (e.g.
        ``"DeepLabV3Plus + vgg11: DeepLabV3Plus needs a dilatable encoder ..."``), or ``None``
        if the candidate is buildable as far as the known rules go.
    """
    pair = f"{genotype.decoder} + {_encoder_label(genotype)}"
    for rule in (_pair_reason, _stride_reason, _size_reason, _channels_reason):
        reason = rule(genotype, pair)
        if reason is not None:
            return reason
    return None


def decoder_kwargs(genotype: SMNASGenotype) -> dict[str, Any]:
    """The decoder-specific keywords of ``smp.create_model`` for ``genotype``.

    ``output_stride`` becomes ``encoder_output_stride`` (DeepLabV3/V3+, PAN; smp's default when
    ``None``). ``decoder_channels`` (``c``; ``None``: smp's default) becomes: Unet, UnetPlusPlus,
    MAnet ``decoder_channels=(c, c/2, ..., c/2**(depth-1))`` (``c`` = 256 when ``None``: smp's
    default tuple, cut to the depth, which smp requires); FPN ``decoder_pyramid_channels=c``,
    ``decoder_segmentation_channels=c/2``; DeepLabV3/V3+, PAN, UPerNet ``decoder_channels=c``;
    PSPNet ``psp_out_channels=c``; Segformer ``decoder_segmentation_channels=c``; Linknet has no
    width parameter and ignores it.

    Args:
        genotype: The candidate.

    Returns:
        Keyword arguments.

    Example:
        >>> decoder_kwargs(SMNASGenotype(encoder="resnet18", decoder="Unet", input_size=(64, 64),
        ...                              encoder_depth=3))
        {'decoder_channels': (256, 128, 64)}
    """
    dec, c = genotype.decoder, genotype.decoder_channels
    kwargs: dict[str, Any] = {}
    if dec in OUTPUT_STRIDES and genotype.output_stride is not None:
        kwargs["encoder_output_stride"] = genotype.output_stride
    if dec in ("Unet", "UnetPlusPlus", "MAnet"):
        width = _UNET_WIDTH if c is None else c
        kwargs["decoder_channels"] = tuple(
            max(1, width >> i) for i in range(genotype.encoder_depth)
        )
    elif c is None or dec == "Linknet":
        pass
    elif dec == "FPN":
        kwargs["decoder_pyramid_channels"] = c
        kwargs["decoder_segmentation_channels"] = c // 2
    elif dec == "PSPNet":
        kwargs["psp_out_channels"] = c
    elif dec == "Segformer":
        kwargs["decoder_segmentation_channels"] = c
    else:  # DeepLabV3, DeepLabV3Plus, PAN, UPerNet
        kwargs["decoder_channels"] = c
    return kwargs


def _encoder_name(genotype: SMNASGenotype, pair: str) -> str:
    if genotype.encoder != CODED:
        return genotype.encoder
    from lightning_nas.methods.smnas.encoder import register_coded_encoder

    try:
        return register_coded_encoder(genotype.base_width, genotype.code, genotype.norm)
    except ValueError as err:
        raise InvalidCandidate(f"{pair}: {_one_line(err)}") from err


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _dry_run(model: nn.Module, shape: tuple[int, ...], count_flops: bool = False) -> Any:
    """Run ``model`` in eval mode without gradients on zeros of ``shape``.

    On a copy moved to the meta device (shapes only: no memory, no compute, even at 1024×2048)
    when the model is not there already; the model's own mode is left as it was.

    Returns:
        ``(logits, flops)``: the output and, if ``count_flops``, the FLOPs counted by
        ``FlopCounterMode`` (else 0).
    """
    meta = model if _device(model).type == "meta" else copy.deepcopy(model).to("meta")
    was_training = meta.training
    meta.eval()
    counter = FlopCounterMode(display=False) if count_flops else None
    try:
        with torch.no_grad():
            x = torch.zeros(shape, device="meta")
            if counter is None:
                return meta(x), 0
            with counter:
                out = meta(x)
            return out, counter.get_total_flops()
    finally:
        meta.train(was_training)


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple | list) else out


def build_model(
    genotype: SMNASGenotype,
    num_classes: int,
    in_channels: int = 3,
    encoder_weights: str | None = None,
) -> nn.Module:
    """Build the smp model of a stage-1 (or coded stage-2) candidate and check its output size.

    :func:`static_reason` first; then ``smp.create_model(arch=genotype.decoder, ...)`` with
    :func:`decoder_kwargs` (a coded encoder is registered in smp's table first, see
    :mod:`~lightning_nas.methods.smnas.encoder`); then one forward pass of batch 1 at
    ``genotype.input_size``, in eval mode without gradients, on a copy of the model on the meta
    device (shapes only; if it fails there, the model itself is run to confirm), whose logits
    must have the input's size. The model is returned in training mode, on the default device.

    Args:
        genotype: The candidate.
        num_classes: Output classes.
        in_channels: Input image channels.
        encoder_weights: smp's ``encoder_weights``; keep ``None`` offline (anything else
            downloads; coded encoders have none).

    Returns:
        The ``smp`` segmentation model.

    Raises:
        InvalidCandidate: With the static reason, smp's error (one line) when it refuses to
            build or to run the model, or when the logits do not have the input's size.
    """
    reason = static_reason(genotype)
    pair = f"{genotype.decoder} + {_encoder_label(genotype)}"
    if reason is not None:
        raise InvalidCandidate(reason)
    encoder_name = _encoder_name(genotype, pair)
    try:
        model = smp.create_model(
            arch=genotype.decoder,
            encoder_name=encoder_name,
            encoder_depth=genotype.encoder_depth,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=num_classes,
            **decoder_kwargs(genotype),
        )
    except Exception as err:  # whatever smp raises: the candidate is not buildable
        raise InvalidCandidate(f"{pair}: smp refused to build it: {_one_line(err)}") from err
    shape = (1, in_channels, *genotype.input_size)
    try:
        out, _ = _dry_run(model, shape)
    except Exception:  # a meta-device limitation, or a real error: run the model to know
        try:
            with torch.no_grad():
                model.eval()
                out = model(torch.zeros(shape, device=_device(model)))
        except Exception as err:
            raise InvalidCandidate(
                f"{pair}: smp refused to run it at {shape[2]}x{shape[3]}: {_one_line(err)}"
            ) from err
        finally:
            model.train()
    got = tuple(_logits(out).shape[-2:])
    if got != tuple(genotype.input_size):
        raise InvalidCandidate(
            f"{pair}: logits of size {got[0]}x{got[1]} for an input of "
            f"{shape[2]}x{shape[3]} (encoder_depth {genotype.encoder_depth})"
        )
    return model


def model_cost(
    model: nn.Module, input_size: tuple[int, int], in_channels: int = 3
) -> dict[str, float]:
    """Parameters and multiply-adds of ``model`` at batch 1.

    The multiply-adds are ``torch.utils.flop_counter.FlopCounterMode``'s FLOPs / 2, counted on a
    copy of the model on the meta device (no compute, any input size): convolutions, matrix
    products and attention only — normalisation, activations, pooling, interpolation and
    additions are not counted.

    Args:
        model: The network (its mode is left as it was).
        input_size: ``(H, W)`` of the input.
        in_channels: Input image channels.

    Returns:
        ``{"params": millions of parameters, "flops": billions of multiply-adds (GMACs)}``.
    """
    params = sum(p.numel() for p in model.parameters())
    _, flops = _dry_run(model, (1, in_channels, *input_size), count_flops=True)
    return {"params": params / 1e6, "flops": flops / 2 / 1e9}
