"""SM-NAS stage 1 on smp 0.6: the encoder × decoder table, the rules, the builder, the network.

The table test builds every pair of the curated lists (on the meta device: shapes only, fast;
``mit_b*`` on the CPU, its constructor calls ``.item()``) and compares the refusals with a
literal table; every rule is checked against smp itself, so a change in smp's behaviour fails.
"""

from contextlib import nullcontext
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import build_network, save
from lightning_nas.methods.smnas import structural
from lightning_nas.methods.smnas.genotype import SMNASGenotype
from lightning_nas.methods.smnas.network import SMNASNetwork
from lightning_nas.methods.smnas.structural import (
    DECODERS,
    ENCODERS,
    INPUT_SIZES,
    InvalidCandidate,
    build_model,
    decoder_kwargs,
    model_cost,
    output_stride,
    static_reason,
)

ROOT = Path(__file__).resolve().parents[3]

# Each decoder at its own depth (PSPNet is right at depth 3 only) and smallest size (PAN).
DEPTH = {"PSPNet": 3}
SIZE = {"PAN": (128, 128)}

# The literal table: pairs of ENCODERS × DECODERS (at DEPTH / SIZE) smp 0.6 cannot build,
# with a fragment of the reason. Every other pair must build with logits of the input size.
REFUSED: dict[tuple[str, str], str] = {
    ("UnetPlusPlus", "mit_b0"): "does not support mit_b* encoders in UnetPlusPlus",
    ("Linknet", "mit_b0"): "does not support mit_b* encoders in Linknet",
    ("DeepLabV3", "vgg11"): "DeepLabV3 needs a dilatable encoder (output stride 8); vgg11 is not",
    ("DeepLabV3Plus", "vgg11"): "needs a dilatable encoder (output stride 16); vgg11 is not",
    ("PAN", "vgg11"): "PAN needs a dilatable encoder (output stride 16); vgg11 is not",
}


def on_meta(encoder: str):
    """Build on the meta device (no memory, no compute) unless the encoder cannot be."""
    return nullcontext() if encoder.startswith("mit_b") else torch.device("meta")


def genotype(encoder: str, decoder: str, **kwargs) -> SMNASGenotype:
    kwargs.setdefault("input_size", SIZE.get(decoder, (64, 64)))
    kwargs.setdefault("encoder_depth", DEPTH.get(decoder, 5))
    return SMNASGenotype(encoder=encoder, decoder=decoder, **kwargs)


def raw_smp(g: SMNASGenotype) -> tuple[int, int] | str:
    """What plain smp does with ``g``: the logits' size, or its error's first line."""
    try:
        with on_meta(g.encoder), torch.no_grad():
            model = smp.create_model(
                g.decoder,
                encoder_name=g.encoder,
                encoder_depth=g.encoder_depth,
                encoder_weights=None,
                classes=2,
                **decoder_kwargs(g),
            ).eval()
            out = model(torch.zeros(1, 3, *g.input_size))
    except Exception as err:
        return str(err).splitlines()[0]
    return tuple(out.shape[-2:])


def test_lists() -> None:
    assert DECODERS == structural.DECODERS and len(set(ENCODERS)) == len(ENCODERS) >= 8
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in INPUT_SIZES)
    assert {"resnet18", "mobilenet_v2", "mit_b0"} <= set(ENCODERS)
    assert any(e.startswith("tu-") for e in ENCODERS)
    assert all(d in DECODERS for d, _ in REFUSED) and all(e in ENCODERS for _, e in REFUSED)


# ------------------------------------------------------------------------ the table
@pytest.mark.parametrize("decoder", DECODERS)
def test_table(decoder: str) -> None:
    """Every encoder with ``decoder``: built with logits of the input size, or refused as listed."""
    refused = {}
    for encoder in ENCODERS:
        g = genotype(encoder, decoder)
        reason = static_reason(g)
        if reason is not None:
            refused[encoder] = reason
            assert "\n" not in reason and reason.startswith(f"{decoder} + {encoder}: ")
            with pytest.raises(InvalidCandidate) as info:
                build_model(g, num_classes=2)
            assert info.value.reason == reason
            assert not isinstance(raw_smp(g), tuple), f"{g.label}: smp builds it"
            continue
        with on_meta(encoder):
            model = build_model(g, num_classes=2)
            with torch.no_grad():
                out = model.eval()(torch.zeros(1, 3, *g.input_size))
        assert tuple(out.shape) == (1, 2, *g.input_size), g.label
    expected = {e: why for (d, e), why in REFUSED.items() if d == decoder}
    assert set(refused) == set(expected)
    for encoder, why in expected.items():
        assert why in refused[encoder]


# ------------------------------------------------------------------------ the rules
RULES = [
    # (genotype, reason fragment, what plain smp does: "error", "size" (wrong size) or "ok")
    (
        dict(decoder="FPN", encoder_depth=4),
        "encoder_depth 4 gives logits of the wrong size",
        "size",
    ),
    (dict(decoder="FPN", encoder_depth=3), "FPN upsamples x4 from its 4th deepest feature", "size"),
    (dict(decoder="PSPNet", encoder_depth=5), "encoder_depth 5 gives logits of the wrong", "size"),
    (dict(decoder="PSPNet", encoder_depth=4), "use encoder_depth 3", "size"),
    (
        dict(decoder="FPN", encoder="mit_b0", encoder_depth=4),
        "supports mit_b* encoders in FPN at encoder_depth 5 only",
        "error",
    ),
    (dict(decoder="Unet", output_stride=16), "output_stride 16 is ignored (Unet does not", "ok"),
    (dict(decoder="DeepLabV3", output_stride=32), "DeepLabV3 takes 8 or 16", "error"),
    (dict(decoder="PAN", output_stride=8, input_size=(128, 128)), "PAN takes 16 or 32", "error"),
    (
        dict(decoder="DeepLabV3Plus", encoder_depth=3, output_stride=16),
        "output_stride 16 is ignored at encoder_depth 3",
        "ok",
    ),
    (
        dict(decoder="FPN", input_size=(100, 100)),
        "must be divisible by the output stride 32",
        "error",
    ),
    (
        dict(decoder="DeepLabV3", output_stride=8, input_size=(60, 64)),
        "input 60x64 must be divisible by the output stride 8",
        "error",
    ),
    (
        dict(decoder="PAN", input_size=(96, 96)),
        "PAN needs each side >= 8 x output stride 16 = 128",
        "error",
    ),
    (dict(decoder="PAN", input_size=(96, 256)), "PAN needs each side >= 8", "error"),
    (dict(decoder="PAN", output_stride=32, input_size=(128, 128)), "= 256", "error"),
    (dict(decoder="PAN", encoder_depth=4, input_size=(96, 96)), "= 128", "error"),
    (dict(decoder="PAN", encoder_depth=3, input_size=(32, 64)), "output stride 8 = 64", "error"),
    (dict(decoder="Unet", encoder="mit_b0", input_size=(16, 16)), "each side >= 32", "error"),
    (
        dict(decoder="DeepLabV3", encoder="mit_b0", output_stride=8, input_size=(24, 32)),
        "mit_b* encoders need each side >= 32",
        "error",
    ),
    (
        dict(decoder="FPN", decoder_channels=96),
        "decoder_channels 96 must be a multiple of 64",
        "error",
    ),
    (dict(decoder="DeepLabV3Plus", encoder="densenet121"), "densenet121 is not", "error"),
    (dict(decoder="DeepLabV3", encoder="xception", output_stride=16), "dilatable", "error"),
    (dict(decoder="Unet", encoder="resnet7"), "unknown smp encoder 'resnet7'", "error"),
    (dict(decoder="Unet", encoder="tu-not_a_model"), "unknown smp encoder", "error"),
]


@pytest.mark.parametrize(("kwargs", "fragment", "smp_does"), RULES)
def test_rules(kwargs: dict, fragment: str, smp_does: str) -> None:
    """Each rule refuses with a one-line reason, and matches what smp itself does."""
    kwargs = {"encoder": "resnet18", "input_size": (64, 64), **kwargs}
    g = SMNASGenotype(**kwargs)
    reason = static_reason(g)
    assert reason is not None and fragment in reason and "\n" not in reason
    assert reason.startswith(f"{g.decoder} + {g.encoder}: ")
    with pytest.raises(InvalidCandidate) as info:
        build_model(g, num_classes=2)
    assert info.value.reason == str(info.value) == reason
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)
    got = raw_smp(g)
    if smp_does == "error":
        assert isinstance(got, str), f"smp now builds {g.label}: {got}"
    elif smp_does == "size":
        assert isinstance(got, tuple) and got != g.input_size, f"smp now gives {got}"
    else:  # accepted by smp but to no effect: an output stride above the encoder's
        assert got == g.input_size
        with on_meta(g.encoder):
            model = smp.create_model(
                g.decoder, encoder_name=g.encoder, encoder_depth=g.encoder_depth,
                encoder_weights=None, **decoder_kwargs(g),
            )  # fmt: skip
        assert model.encoder.output_stride != g.output_stride


ACCEPTED = [
    dict(decoder="PAN", encoder="vgg11", output_stride=32, input_size=(256, 256)),  # no dilation
    dict(decoder="PAN", encoder_depth=3, input_size=(64, 96)),
    dict(decoder="PAN", encoder_depth=4, output_stride=16, input_size=(128, 160)),
    dict(decoder="Unet", input_size=(100, 72)),  # only Unet takes any size
    dict(decoder="Unet", encoder="mit_b0", input_size=(32, 40)),
    dict(decoder="DeepLabV3Plus", encoder="mit_b0", input_size=(32, 48)),
    dict(decoder="DeepLabV3", encoder_depth=4, output_stride=16),
    dict(decoder="FPN", decoder_channels=128),
    dict(decoder="MAnet", encoder="tu-convnext_atto", encoder_depth=3, decoder_channels=24),
    dict(decoder="UnetPlusPlus", encoder="efficientnet-b0", encoder_depth=4, decoder_channels=8),
    dict(decoder="UPerNet", encoder_depth=3, decoder_channels=48),
    dict(decoder="Segformer", encoder="tu-regnety_002", encoder_depth=4, decoder_channels=40),
    dict(decoder="PSPNet", encoder_depth=3, decoder_channels=100),
    dict(decoder="Linknet", decoder_channels=100),  # ignored
]


@pytest.mark.parametrize("kwargs", ACCEPTED)
def test_accepted_edge_cases(kwargs: dict) -> None:
    kwargs = {"encoder": "resnet18", "input_size": (64, 64), "encoder_depth": 5, **kwargs}
    g = SMNASGenotype(**kwargs)
    assert static_reason(g) is None
    with on_meta(g.encoder):
        model = build_model(g, num_classes=3)
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, 3, *g.input_size))
    assert tuple(out.shape) == (2, 3, *g.input_size)


def test_decoder_kwargs() -> None:
    def kw(decoder: str, channels: int | None, **extra) -> dict:
        return decoder_kwargs(
            SMNASGenotype(
                encoder="resnet18",
                decoder=decoder,
                input_size=(64, 64),
                decoder_channels=channels,
                **extra,
            )  # fmt: skip
        )

    assert kw("Unet", None) == {"decoder_channels": (256, 128, 64, 32, 16)}  # smp's default
    assert kw("MAnet", 64, encoder_depth=3) == {"decoder_channels": (64, 32, 16)}
    assert kw("UnetPlusPlus", 8) == {"decoder_channels": (8, 4, 2, 1, 1)}
    assert kw("FPN", 128) == {"decoder_pyramid_channels": 128, "decoder_segmentation_channels": 64}
    assert kw("FPN", None) == {}
    assert kw("PSPNet", 64, encoder_depth=3) == {"psp_out_channels": 64}
    assert kw("DeepLabV3Plus", 96, output_stride=8) == {
        "encoder_output_stride": 8,
        "decoder_channels": 96,
    }
    assert kw("PAN", 16) == {"decoder_channels": 16}
    assert kw("UPerNet", 128) == {"decoder_channels": 128}
    assert kw("Segformer", 128) == {"decoder_segmentation_channels": 128}
    assert kw("Linknet", 128) == {}
    g = SMNASGenotype(encoder="resnet18", decoder="DeepLabV3Plus", input_size=(64, 64))
    assert output_stride(g) == 16
    assert output_stride(SMNASGenotype(encoder="resnet18", decoder="Unet", input_size=(8, 8),
                                       encoder_depth=3)) == 8  # fmt: skip


def test_decoder_channels_reach_the_model() -> None:
    g = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64), decoder_channels=64)
    with torch.device("meta"):
        model = build_model(g, num_classes=2)
    assert model.segmentation_head[0].in_channels == 32  # decoder_segmentation_channels = 64 / 2
    g = SMNASGenotype(encoder="resnet18", decoder="Unet", input_size=(64, 64), decoder_channels=64)
    with torch.device("meta"):
        model = build_model(g, num_classes=2)
    assert model.segmentation_head[0].in_channels == 4  # 64 / 2**4


# ------------------------------------------------------------------------ the builder
def test_the_size_guard_catches_what_the_rules_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the static rules, FPN at depth 4 still fails: its logits are 2× the input."""
    monkeypatch.setattr(structural, "static_reason", lambda g: None)
    g = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64), encoder_depth=4)
    with pytest.raises(InvalidCandidate, match=r"logits of size 128x128 for an input of 64x64"):
        build_model(g, num_classes=2)
    g = SMNASGenotype(encoder="resnet18", decoder="PAN", input_size=(64, 64))
    with pytest.raises(InvalidCandidate, match=r"^PAN \+ resnet18: smp refused to run it at 64x64"):
        build_model(g, num_classes=2)


def test_smp_build_errors_become_invalid_candidates() -> None:
    g = SMNASGenotype(encoder="resnet18", decoder="Unet", input_size=(64, 64))
    with pytest.raises(InvalidCandidate, match=r"smp refused to build it: KeyError") as info:
        build_model(g, num_classes=2, encoder_weights="no-such-weights")
    assert "\n" not in info.value.reason


def test_build_model_on_the_cpu_returns_a_training_model() -> None:
    g = SMNASGenotype(encoder="mobilenet_v2", decoder="DeepLabV3Plus", input_size=(64, 96),
                      output_stride=8)  # fmt: skip
    model = build_model(g, num_classes=4, in_channels=1)
    assert model.training and next(model.parameters()).device.type == "cpu"
    out = model(torch.randn(2, 1, 64, 96))
    assert tuple(out.shape) == (2, 4, 64, 96)
    assert model.encoder.output_stride == 8


def test_model_cost() -> None:
    g = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64))
    model = build_model(g, num_classes=6)
    cost = model_cost(model, (64, 64))
    assert cost["params"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    assert 12.5 < cost["params"] < 13.5  # resnet18 11.2 M + FPN
    assert cost["flops"] > 0
    assert model_cost(model, (128, 128))["flops"] / cost["flops"] == pytest.approx(4, rel=0.05)
    assert model.training  # mode left as it was
    # The same count on a model already on the meta device.
    with torch.device("meta"):
        meta_model = build_model(g, num_classes=6)
    assert model_cost(meta_model, (64, 64)) == pytest.approx(cost)


# ------------------------------------------------------------------------ coded encoders
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(decoder="Unet", norm="gn_ws"),
        dict(decoder="FPN", decoder_channels=128),
        dict(decoder="DeepLabV3Plus", output_stride=8),
        dict(decoder="PSPNet", encoder_depth=3),
        dict(decoder="PAN", input_size=(128, 128)),
        dict(decoder="Segformer", encoder_depth=4, norm="gn_ws"),
    ],
)
def test_coded_encoder(kwargs: dict) -> None:
    kwargs = {"input_size": (64, 64), **kwargs}
    g = SMNASGenotype(encoder="coded", base_width=16, code="1-21-21-12", **kwargs)
    model = build_model(g, num_classes=3)
    assert model.encoder.out_channels == [3, 16, 16, 32, 64, 128][: g.encoder_depth + 1]
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, *g.input_size))
    assert tuple(out.shape) == (1, 3, *g.input_size)


def test_coded_encoder_refusals_name_the_code() -> None:
    g = SMNASGenotype(encoder="coded", decoder="FPN", input_size=(64, 64), base_width=16,
                      code="1-21-21-12", encoder_depth=4)  # fmt: skip
    assert static_reason(g).startswith("FPN + coded 16:1-21-21-12: encoder_depth 4")


# ------------------------------------------------------------------------ the network
def test_network_from_a_yaml_file(tmp_path: Path) -> None:
    g = SMNASGenotype(encoder="tu-mobilenetv3_small_100", decoder="UPerNet", input_size=(64, 96))
    path = tmp_path / "genotype.yaml"
    save(g, path)
    net = SMNASNetwork(path, num_classes=4)
    assert net.genotype == g and net.num_classes == 4 and net.output_stride == 32
    out = net(torch.randn(2, 3, 64, 96))
    assert tuple(out.shape) == (2, 4, 64, 96)
    out.mean().backward()
    net.eval()
    with torch.no_grad():  # other sizes: padded to the stride, cropped back
        assert tuple(net(torch.randn(1, 3, 50, 70)).shape) == (1, 4, 50, 70)
    net = SMNASNetwork(str(path), num_classes=2, in_channels=1)
    assert tuple(net(torch.randn(2, 1, 64, 64)).shape) == (2, 2, 64, 64)


def test_build_network() -> None:
    g = SMNASGenotype(encoder="resnet18", decoder="Linknet", input_size=(64, 64))
    net = build_network(g, 6)
    assert isinstance(net, SMNASNetwork)
    assert tuple(net(torch.randn(2, 3, 64, 64)).shape) == (2, 6, 64, 64)


def test_network_errors() -> None:
    with pytest.raises(
        ConfigError, match="SMNASNetwork: expected an SMNASGenotype or its file, got"
    ):
        SMNASNetwork(ROOT / "experiments/genotypes/darts_v2.yaml", num_classes=2)
    g = SMNASGenotype(encoder="resnet18", decoder="PSPNet", input_size=(64, 64))
    with pytest.raises(InvalidCandidate, match="PSPNet"):
        SMNASNetwork(g, num_classes=2)
    ok = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64))
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 1"):
        SMNASNetwork(ok, num_classes=0)
