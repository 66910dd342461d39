"""The coded ResNet-style encoder: widths, strides, dilation, smp decoders, GN+WS, torchvision."""

import pytest
import segmentation_models_pytorch as smp
import torch
import torchvision
from timm.layers import StdConv2d
from torch import nn

from lightning_nas.methods.smnas.code import BASE_CODES
from lightning_nas.methods.smnas.encoder import (
    CodedResNetEncoder,
    coded_encoder_name,
    register_coded_encoder,
)
from lightning_nas.methods.smnas.genotype import GN_GROUPS, SMNASGenotype


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------- widths and strides
def test_out_channels_follow_the_code() -> None:
    """Base 48, "1-21-21-12": stem 48 | 48 | 96, 96 | 192, 192 | 192, 384."""
    enc = CodedResNetEncoder(48, "1-21-21-12")
    assert enc.out_channels == [3, 48, 48, 96, 192, 384]
    assert [b.conv2.out_channels for b in enc.layer4] == [192, 384]
    assert CodedResNetEncoder(48, "1-21-21-12", depth=3).out_channels == [3, 48, 48, 96]
    # A first '2' doubles inside stage 1: stem 56, stage 1 ends at 112.
    assert CodedResNetEncoder(56, "2-1-1-1").out_channels == [3, 56, 112, 112, 112, 112]


def test_features_are_at_strides_2_to_32_whatever_the_code() -> None:
    x = torch.randn(2, 3, 64, 64)
    for code in ("1-21-21-12", "12-1-1-1", "1-1-1-1", "22-11-121-1"):
        enc = CodedResNetEncoder(16, code).eval()
        with torch.no_grad():
            features = enc(x)
        assert [tuple(f.shape) for f in features] == [
            (2, c, 64 // s, 64 // s)
            for c, s in zip(enc.out_channels, (1, 2, 4, 8, 16, 32), strict=True)
        ]


def test_depth_builds_only_the_stages_it_returns() -> None:
    full = CodedResNetEncoder(16, "1-21-21-12")
    shallow = CodedResNetEncoder(16, "1-21-21-12", depth=3)
    features = shallow.eval()(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == [3, 16, 16, 32]
    assert isinstance(shallow.layer3, nn.Identity) and isinstance(shallow.layer4, nn.Identity)
    expected = sum(n_params(getattr(full, m)) for m in ("conv1", "bn1", "layer1", "layer2"))
    assert n_params(shallow) == expected < n_params(full)
    assert shallow.get_stages() == {}
    assert shallow.output_stride == 8


# ------------------------------------------------------------------------ dilation
@pytest.mark.parametrize(
    ("output_stride", "sizes", "dilations"),
    [(16, [32, 16, 8, 4, 4], (1, 2)), (8, [32, 16, 8, 8, 8], (2, 4))],
)
def test_dilation_keeps_the_resolution(
    output_stride: int, sizes: list[int], dilations: tuple[int, int]
) -> None:
    """smp's ResNet recipe: stage 4 (and 3 for OS 8) get stride 1 and dilation 32/16 ÷ OS."""
    enc = CodedResNetEncoder(16, "1-21-21-12", output_stride=output_stride).eval()
    assert enc.output_stride == output_stride
    assert [f.shape[-1] for f in enc(torch.randn(1, 3, 64, 64))[1:]] == sizes
    assert enc.layer3[0].conv1.dilation == (dilations[0],) * 2
    assert enc.layer4[1].conv2.dilation == (dilations[1],) * 2
    assert enc.layer4[0].conv1.stride == (1, 1)
    assert enc.layer4[0].downsample[0].stride == (1, 1)


def test_smp_get_encoder_dilates_a_registered_code() -> None:
    name = register_coded_encoder(16, "1-21-21-12", norm="gn_ws")
    enc = smp.encoders.get_encoder(name, depth=5, output_stride=8)
    assert isinstance(enc, CodedResNetEncoder) and enc.norm == "gn_ws"
    assert [f.shape[-1] for f in enc.eval()(torch.randn(1, 3, 64, 64))] == [64, 32, 16, 8, 8, 8]


# ---------------------------------------------------------------------- smp decoders
@pytest.mark.parametrize(
    ("arch", "kwargs", "stride"),
    [
        ("Unet", {"decoder_channels": (64, 32, 16, 16, 8)}, 32),
        ("FPN", {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}, 32),
        ("DeepLabV3Plus", {"encoder_output_stride": 16, "decoder_channels": 32}, 16),
        ("DeepLabV3", {"decoder_channels": 32}, 8),
    ],
)
@pytest.mark.parametrize("norm", ["bn", "gn_ws"])
def test_smp_decoders_give_logits_of_the_input_size(
    arch: str, kwargs: dict, stride: int, norm: str
) -> None:
    name = register_coded_encoder(16, "1-21-21-12", norm=norm)
    model = smp.create_model(arch, encoder_name=name, encoder_weights=None, classes=5, **kwargs)
    assert isinstance(model.encoder, CodedResNetEncoder)
    assert model.encoder.output_stride == stride
    with torch.no_grad():
        logits = model.eval()(torch.randn(2, 3, 64, 64))
    assert tuple(logits.shape) == (2, 5, 64, 64)


@pytest.mark.parametrize(
    ("arch", "depth"),
    [
        ("UnetPlusPlus", 5),
        ("PSPNet", 3),  # smp: PSPNet's upsampling assumes depth 3
        ("PAN", 5),  # dilates to output stride 16; needs ≥ 128 px
        ("Linknet", 5),
        ("MAnet", 5),
        ("UPerNet", 5),
        ("Segformer", 5),
    ],
)
def test_the_other_smnas_decoders_build_on_a_coded_encoder(arch: str, depth: int) -> None:
    name = register_coded_encoder(8, "1-21-21-12", norm="gn_ws")
    model = smp.create_model(
        arch, encoder_name=name, encoder_weights=None, classes=3, encoder_depth=depth
    )
    with torch.no_grad():
        logits = model.eval()(torch.randn(1, 3, 128, 128))
    assert tuple(logits.shape) == (1, 3, 128, 128)


def test_in_channels_patch_the_stem() -> None:
    name = register_coded_encoder(16, "1-21-21-12", norm="gn_ws")
    model = smp.Unet(name, encoder_weights=None, in_channels=1, classes=2)
    assert isinstance(model.encoder.conv1, StdConv2d)
    assert model.encoder.conv1.weight.shape == (16, 1, 7, 7)
    assert model.encoder.out_channels[0] == 1
    assert tuple(model.eval()(torch.randn(1, 1, 64, 64)).shape) == (1, 2, 64, 64)
    direct = CodedResNetEncoder(16, "1-21-21-12", in_channels=4)
    assert direct.conv1.weight.shape == (16, 4, 7, 7) and direct.out_channels[0] == 4


# ----------------------------------------------------------------------- GN + WS
@pytest.mark.parametrize("norm", ["bn", "gn_ws"])
def test_module_types_per_norm(norm: str) -> None:
    """ResNet-18's code: stem 1 + 8 blocks × 2 + 3 projections = 20 convs, 20 norms."""
    enc = CodedResNetEncoder(64, BASE_CODES["resnet18"], norm=norm)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    std = [m for m in convs if isinstance(m, StdConv2d)]
    gns = [m for m in enc.modules() if isinstance(m, nn.GroupNorm)]
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 20
    if norm == "gn_ws":
        assert (len(std), len(gns), len(bns)) == (20, 20, 0)
        assert {g.num_groups for g in gns} == {GN_GROUPS}
    else:
        assert (len(std), len(gns), len(bns)) == (0, 0, 20)


def test_gn_ws_trains_at_batch_size_1_where_bn_cannot() -> None:
    """At 32×32 the last feature is 1×1: BatchNorm sees one value per channel and refuses."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    enc = CodedResNetEncoder(16, "1-21-21-12", norm="gn_ws").train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    features = enc(x)
    assert features[-1].shape == (1, 128, 1, 1)
    loss = sum(f.square().mean() for f in features[1:])
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    opt.step()
    changed = [k for k, v in enc.state_dict().items() if not torch.equal(v, before[k])]
    assert set(changed) == set(before)  # no buffers: every entry is a trained parameter

    bn = CodedResNetEncoder(16, "1-21-21-12", norm="bn").train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn(x)


# ------------------------------------------------------------- torchvision as an oracle
@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_base_64_resnet_codes_match_torchvision_parameter_counts(arch: str) -> None:
    tv = getattr(torchvision.models, arch)(weights=None)
    expected = n_params(tv) - n_params(tv.fc)  # conv1, bn1, layer1..layer4
    assert n_params(CodedResNetEncoder(64, BASE_CODES[arch])) == expected
    if arch == "resnet18":
        assert expected == 11_176_512


def test_resnet18_code_loads_torchvisions_weights_and_computes_the_same_features() -> None:
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None).eval()
    enc = CodedResNetEncoder(64, BASE_CODES["resnet18"]).eval()
    enc.load_state_dict(tv.state_dict())  # strict; fc.* dropped
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stem = tv.relu(tv.bn1(tv.conv1(x)))
        c2 = tv.layer1(tv.maxpool(stem))
        c3 = tv.layer2(c2)
        c4 = tv.layer3(c3)
        c5 = tv.layer4(c4)
        features = enc(x)
    for ours, theirs in zip(features, (x, stem, c2, c3, c4, c5), strict=True):
        torch.testing.assert_close(ours, theirs)


# ---------------------------------------------------------------- registration, errors
def test_register_is_idempotent_and_deterministic() -> None:
    name = register_coded_encoder(64, "11-21-21-21", norm="gn_ws")
    assert name == "smnas_coded_gn_ws_64_11-21-21-21"
    entry = smp.encoders.encoders[name]
    assert register_coded_encoder(64, "11-21-21-21", norm="gn_ws") == name
    assert smp.encoders.encoders[name] is entry
    assert entry["params"] == {"base_width": 64, "code": "11-21-21-21", "norm": "gn_ws"}
    assert entry["pretrained_settings"] == {}
    assert register_coded_encoder(64, "11-21-21-21") == "smnas_coded_bn_64_11-21-21-21"


def test_register_refuses_a_name_taken_by_something_else(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = "smnas_coded_bn_48_1-1-1-1"
    monkeypatch.setitem(smp.encoders.encoders, taken, {"encoder": nn.Identity, "params": {}})
    with pytest.raises(ValueError, match="already registered"):
        register_coded_encoder(48, "1-1-1-1")


def test_registered_codes_have_no_pretrained_weights() -> None:
    name = register_coded_encoder(48, "1-21-21-12")
    with pytest.raises(KeyError, match="Wrong pretrained weights `imagenet`"):
        smp.encoders.get_encoder(name, weights="imagenet")


def test_coded_encoder_name_of_a_genotype() -> None:
    g = SMNASGenotype(
        encoder="coded",
        decoder="FPN",
        input_size=(64, 64),
        base_width=56,
        code="1-21-21-12",
        norm="gn_ws",
    )
    assert coded_encoder_name(g) == "smnas_coded_gn_ws_56_1-21-21-12"
    assert "smnas_coded_gn_ws_56_1-21-21-12" in smp.encoders.encoders
    stage1 = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64))
    with pytest.raises(ValueError, match="is not 'coded'"):
        coded_encoder_name(stage1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"base_width": 60, "code": "11-21-21-21", "norm": "gn_ws"},
            "code '11-21-21-21' with base 60: stem width 60 is not divisible by 8 GroupNorm groups",
        ),
        (
            {"base_width": 12, "code": "21-21-21-21", "norm": "gn_ws"},
            "code '21-21-21-21' with base 12: stem width 12 is not divisible by 8 GroupNorm groups",
        ),
        (
            {"base_width": 64, "code": "11-21-21", "norm": "bn"},
            "code '11-21-21': 3 stages; expected 4 separated by '-'",
        ),
        (
            {"base_width": 64, "code": "11-21-21-21", "norm": "ln"},
            "code '11-21-21-21': norm 'ln'; expected one of bn, gn_ws",
        ),
    ],
)
def test_invalid_codes_raise_one_line(kwargs: dict, message: str) -> None:
    for build in (CodedResNetEncoder, register_coded_encoder):
        with pytest.raises(ValueError) as info:
            build(**kwargs)
        assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"depth": 0}, "depth 0; expected 1..5"),
        ({"depth": 6}, "depth 6; expected 1..5"),
        ({"output_stride": 4}, "output_stride 4; expected 8, 16 or 32"),
        ({"in_channels": 0}, "in_channels 0; expected a positive integer"),
    ],
)
def test_invalid_constructor_arguments(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        CodedResNetEncoder(16, "1-1-1-1", **kwargs)
