"""Tests of FasterSeg's operators: fixed and slimmable forms, switchable BN, sizes, errors."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.methods.fasterseg.ops import (
    FASTERSEG_PRIMITIVES,
    ConvNorm,
    FasterSegConv,
    FasterSegIdentity,
    FasterSegSkip,
    Head,
    SlimBatchNorm2d,
    SlimConv2d,
    UpsampleConcat,
    make_fasterseg_op,
    make_fasterseg_stem,
    num_filters,
    stem_channels,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ceil2(n: int) -> int:
    return (n + 1) // 2


def test_primitives_and_num_filters() -> None:
    # column order of the released alpha tensors (reference §3.1)
    assert FASTERSEG_PRIMITIVES == ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")
    assert num_filters(8, 12, 8 / 12) == 64
    assert num_filters(32, 12, 8 / 12) == 256
    assert num_filters(16, 12, 1.0) == 192
    assert num_filters(8, 12, 4 / 12) == 32
    assert num_filters(8, 1, 0.01) == 1  # never 0 channels
    assert stem_channels(12, 8 / 12) == (32, 64, 64)  # reference §3.4
    assert stem_channels(12, 1.0) == (48, 96, 96)


def test_stem_channels_from_width_unit_are_exact() -> None:
    # build_op rebuilds an fs_stem entry from its width unit Fch·r (the entry's expansion, by
    # default C_out / 8): it must give the network's exact stem channels.
    for Fch, k in itertools.product(range(1, 25), range(1, 13)):
        assert stem_channels(1, Fch * (k / 12)) == stem_channels(Fch, k / 12)
    for k in range(1, 13):  # FasterSeg's Fch = 12: C_out / 8 is exact
        assert stem_channels(1, stem_channels(12, k / 12)[2] / 8) == stem_channels(12, k / 12)


@pytest.mark.parametrize("slim", [False, True], ids=["fixed", "slim"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op", FASTERSEG_PRIMITIVES)
@pytest.mark.parametrize("size", [(8, 12), (9, 7), (1, 3)])
def test_output_shapes(op: str, stride: int, slim: bool, size: tuple[int, int]) -> None:
    choices = {"in_choices": (3, 6), "out_choices": (4, 10)} if slim else {}
    module = make_fasterseg_op(op, 6, 10, stride, **choices)
    H, W = size
    out = module(torch.randn(2, 6, H, W))
    expected = (H, W) if stride == 1 else (_ceil2(H), _ceil2(W))
    assert tuple(out.shape) == (2, 10, *expected)
    if slim:
        small = module(torch.randn(2, 3, H, W), c_out=4)
        assert tuple(small.shape) == (2, 4, *expected)
        assert module.slimmable and module.in_choices == (3, 6) and module.out_choices == (4, 10)


@pytest.mark.parametrize("op", FASTERSEG_PRIMITIVES)
def test_fixed_ops_use_plain_layers(op: str) -> None:
    module = make_fasterseg_op(op, 6, 10, 2)
    kinds = {type(m) for m in module.modules()}
    assert not kinds & {SlimConv2d, SlimBatchNorm2d}
    assert nn.Conv2d in kinds and nn.BatchNorm2d in kinds
    assert all(m.bias is None for m in module.modules() if isinstance(m, nn.Conv2d))
    slim = make_fasterseg_op(op, 6, 10, 2, in_choices=(6,), out_choices=(10,))
    assert all(type(m) is not nn.Conv2d for m in slim.modules())
    inside = {id(b) for m in slim.modules() if isinstance(m, SlimBatchNorm2d) for b in m.bn}
    assert all(id(m) in inside for m in slim.modules() if type(m) is nn.BatchNorm2d)


def _copy_sliced(fixed: nn.Module, slim: nn.Module) -> None:
    """Give ``fixed`` the leading slices of ``slim``'s weights and width-specific BN stats."""
    slim_modules = dict(slim.named_modules())
    with torch.no_grad():
        for name, m in fixed.named_modules():
            s = slim_modules[name]
            if isinstance(m, nn.Conv2d):
                assert isinstance(s, SlimConv2d)
                m.weight.copy_(s.weight[: m.out_channels, : m.in_channels])
            elif isinstance(m, nn.BatchNorm2d):
                assert isinstance(s, SlimBatchNorm2d)
                m.load_state_dict(_width_state(s, m.num_features))


def _width_state(bn: SlimBatchNorm2d, c: int) -> dict:
    """The ``nn.BatchNorm2d(c)`` state a switchable BN uses at width ``c`` (either layout)."""
    if not bn.shared_affine:
        return bn.bn[bn.channel_choices.index(c)].state_dict()
    return {
        "weight": bn.weight[:c],
        "bias": bn.bias[:c],
        "running_mean": getattr(bn, f"running_mean_{c}"),
        "running_var": getattr(bn, f"running_var_{c}"),
        "num_batches_tracked": bn.num_batches_tracked,
    }


def _randomize_bn(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, SlimBatchNorm2d):
                for c in m.channel_choices:
                    state = _width_state(m, c)
                    state["weight"].uniform_(0.5, 1.5)
                    state["bias"].uniform_(-0.5, 0.5)
                    state["running_mean"].uniform_(-0.5, 0.5)
                    state["running_var"].uniform_(0.5, 2.0)


@pytest.mark.parametrize("shared", [False, True], ids=["private_bn", "shared_affine"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op", FASTERSEG_PRIMITIVES)
def test_slim_op_equals_fixed_op_with_sliced_weights(op: str, stride: int, shared: bool) -> None:
    torch.manual_seed(0)
    slim = make_fasterseg_op(
        op, 8, 12, stride, in_choices=(5, 8), out_choices=(7, 12), shared_bn_affine=shared
    )
    _randomize_bn(slim)
    fixed = make_fasterseg_op(op, 5, 7, stride)
    _copy_sliced(fixed, slim)
    x = torch.randn(2, 5, 11, 10)
    slim.eval(), fixed.eval()
    torch.testing.assert_close(slim(x, c_out=7), fixed(x))
    # training mode: batch statistics of the slice, same running-statistics update
    slim.train(), fixed.train()
    torch.testing.assert_close(slim(x, c_out=7), fixed(x))
    bn_slim = [m for m in slim.modules() if isinstance(m, SlimBatchNorm2d)]
    bn_fixed = [m for m in fixed.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn_slim) == len(bn_fixed) >= 1
    for s, f in zip(bn_slim, bn_fixed):
        assert s.shared_affine == shared
        torch.testing.assert_close(_width_state(s, 7)["running_mean"], f.running_mean)
        torch.testing.assert_close(_width_state(s, 7)["running_var"], f.running_var)


def test_slim_op_at_full_width_equals_fixed_op() -> None:
    torch.manual_seed(0)
    slim = make_fasterseg_op("conv_2x", 6, 8, 1, out_choices=(4, 8)).eval()
    _randomize_bn(slim)
    fixed = make_fasterseg_op("conv_2x", 6, 8, 1).eval()
    _copy_sliced(fixed, slim)
    x = torch.randn(1, 6, 5, 5)
    torch.testing.assert_close(slim(x), fixed(x))
    torch.testing.assert_close(slim(x, c_out=8), fixed(x, c_out=8))


def test_shared_affine_bn_keeps_statistics_per_width() -> None:
    bn = SlimBatchNorm2d(16, channel_choices=(16, 8, 8), shared_affine=True)
    assert bn.channel_choices == (8, 16)
    assert {n for n, _ in bn.named_buffers()} == {
        "running_mean_8",
        "running_var_8",
        "running_mean_16",
        "running_var_16",
        "num_batches_tracked",
    }
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    x = torch.randn(4, 8, 5, 5) * 3 + 2
    bn.train()(x)
    assert torch.all(bn.running_mean_16 == 0) and torch.all(bn.running_var_16 == 1)
    mean = x.mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean_8, 0.1 * mean)
    assert int(bn.num_batches_tracked) == 1
    # eval uses the width's own statistics and the shared affine slice
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    y = bn.eval()(x)
    ref = F.batch_norm(
        x, bn.running_mean_8, bn.running_var_8, bn.weight[:8], bn.bias[:8], False, 0.1, 1e-5
    )
    torch.testing.assert_close(y, ref)
    assert int(bn.num_batches_tracked) == 1
    bn.train()(torch.randn(2, 16, 3, 3))
    assert torch.all(bn.running_mean_16 != 0)


def test_switchable_bn_rejects_unknown_width() -> None:
    bn = SlimBatchNorm2d(16, channel_choices=(8, 16))
    with pytest.raises(ValueError, match=r"12 channels; expected one of \[8, 16\]"):
        bn(torch.randn(2, 12, 3, 3))
    with pytest.raises(ValueError, match="1..16"):
        SlimBatchNorm2d(16, channel_choices=(8, 32))
    with pytest.raises(ValueError, match="1..16"):
        SlimBatchNorm2d(16, channel_choices=())


def test_slim_conv() -> None:
    torch.manual_seed(0)
    conv = SlimConv2d(8, 16, 3, stride=2, padding=1, bias=True)
    x = torch.randn(1, 5, 9, 9)
    ref = F.conv2d(x, conv.weight[:12, :5], conv.bias[:12], stride=2, padding=1)
    torch.testing.assert_close(conv(x, 12), ref)
    assert conv(torch.randn(1, 8, 9, 9)).shape == (1, 16, 5, 5)
    with pytest.raises(ValueError, match="groups must be 1"):
        SlimConv2d(8, 8, 3, groups=2)
    with pytest.raises(ValueError, match="at most 8"):
        conv(torch.randn(1, 9, 4, 4))
    with pytest.raises(ValueError, match=r"c_out must be in 1\.\.16, got 17"):
        conv(x, 17)


def test_skip_forms() -> None:
    assert isinstance(make_fasterseg_op("skip", 8, 8, 1), FasterSegIdentity)
    assert isinstance(make_fasterseg_op("skip", 8, 8, 1), nn.Identity)
    x = torch.randn(1, 8, 5, 5)
    assert make_fasterseg_op("skip", 8, 8, 1)(x, c_out=None) is x
    one_by_one = make_fasterseg_op("skip", 8, 6, 1)
    assert isinstance(one_by_one, FasterSegSkip) and one_by_one.conv.kernel_size == (1, 1)
    slim = make_fasterseg_op("skip", 8, 8, 1, in_choices=(8,), out_choices=(4, 8))
    assert isinstance(slim, FasterSegSkip)  # slimmable stride 1: 1x1 conv + BN + ReLU
    reduce = make_fasterseg_op("skip", 8, 7, 2).eval()
    assert (reduce.conv_1.out_channels, reduce.conv_2.out_channels) == (3, 4)
    assert not any(isinstance(m, nn.ReLU) for m in reduce.modules())  # no ReLU module first
    # even sizes: exactly DARTS' second branch on x[:, :, 1:, 1:] (no padding involved)
    x = torch.randn(2, 8, 6, 8)
    manual = torch.cat([reduce.conv_1(x), reduce.conv_2(x[:, :, 1:, 1:])], dim=1)
    torch.testing.assert_close(reduce(x), F.relu(reduce.bn(manual)))
    with pytest.raises(ValueError, match="widths >= 2"):
        make_fasterseg_op("skip", 8, 1, 2)


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize(
    ("op", "stride", "conv_sizes"),
    [
        ("conv", 1, ("full",)),
        ("conv", 2, ("ceil",)),
        ("conv_2x", 1, ("full", "full")),
        ("conv_2x", 2, ("ceil", "ceil")),
        ("conv_downup", 1, ("floor",)),  # the release's size=(H // 2, W // 2)
        ("conv_downup", 2, ("ceil",)),  # the stride-2 output size of every operator
        ("conv_2x_downup", 1, ("floor", "floor")),
        ("conv_2x_downup", 2, ("ceil", "ceil")),
    ],
)
def test_conv_multi_adds_and_resolution(op: str, stride: int, conv_sizes: tuple) -> None:
    C_in, C_out, H, W = 4, 6, 9, 14
    module = make_fasterseg_op(op, C_in, C_out, stride).eval()
    assert isinstance(module, FasterSegConv)
    assert module.zoomed == op.endswith("downup")
    pixels = {"full": H * W, "ceil": _ceil2(H) * _ceil2(W), "floor": (H // 2) * (W // 2)}
    expected = 0
    for k, size in enumerate(conv_sizes):
        expected += (C_in if k == 0 else C_out) * C_out * 9 * pixels[size]
    assert _macs(module, torch.randn(1, C_in, H, W)) == expected


def test_zoomed_conv_follows_the_release_order() -> None:
    torch.manual_seed(0)
    op = make_fasterseg_op("conv_downup", 4, 6, 1).eval()
    _randomize_bn(op)
    with torch.no_grad():
        op.bn1.running_mean.uniform_(-1, 1)
    x = torch.randn(1, 4, 16, 20)
    # the release: interpolate(scale_factor=0.5) -> conv -> bn -> interpolate back -> relu;
    # on even sizes the explicit ceil size is the same resize.
    down = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)
    y = op.bn1(op.conv1(down))
    y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
    torch.testing.assert_close(op(x), F.relu(y))


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown op 'sep_conv_3x3'; expected one of skip, conv"):
        make_fasterseg_op("sep_conv_3x3", 4, 4, 1)
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        make_fasterseg_op("conv", 4, 4, 3)
    with pytest.raises(ValueError, match="C_out must be an integer >= 1"):
        make_fasterseg_op("conv", 4, 0, 1)
    with pytest.raises(ValueError, match=r"out_choices must be widths in 1\.\.8"):
        make_fasterseg_op("conv", 4, 8, 1, out_choices=(4, 16))
    with pytest.raises(ValueError, match=r"in_choices must be widths in 1\.\.4"):
        make_fasterseg_op("conv", 4, 8, 1, in_choices=(5,))
    fixed = make_fasterseg_op("conv_2x", 4, 8, 1)
    assert fixed(torch.randn(1, 4, 3, 3), c_out=8).shape == (1, 8, 3, 3)
    with pytest.raises(ValueError, match="fixed operator outputs 8 channels; got c_out=4"):
        fixed(torch.randn(1, 4, 3, 3), c_out=4)
    slim = make_fasterseg_op("conv", 4, 8, 1, out_choices=(4, 8))
    with pytest.raises(ValueError, match=r"6 channels; expected one of \[4, 8\]"):
        slim(torch.randn(1, 4, 3, 3), c_out=6)
    with pytest.raises(ValueError, match="kernel_size must be 1 or 3"):
        ConvNorm(4, 4, 5)


def test_head_stem_and_concat() -> None:
    head = Head(128, 19)
    assert head.conv.conv.out_channels == 128 and head.conv.conv.kernel_size == (3, 3)
    assert head.classifier.bias is not None and head.classifier.kernel_size == (1, 1)
    assert Head(512, 19).conv.conv.out_channels == 256
    assert tuple(head(torch.randn(1, 128, 3, 5)).shape) == (1, 19, 3, 5)
    stem = make_fasterseg_stem(3, (6, 10, 8))
    assert isinstance(stem[0], ConvNorm) and stem[0].conv.stride == (2, 2)
    assert [(m.C_in, m.C_out, m.stride) for m in stem[1:]] == [(6, 10, 2), (10, 8, 2)]
    assert tuple(stem(torch.randn(1, 3, 67, 99)).shape) == (1, 8, 9, 13)  # ceil(H / 8)
    out = UpsampleConcat()(torch.randn(1, 4, 5, 7), torch.randn(1, 2, 9, 13))
    assert tuple(out.shape) == (1, 6, 9, 13)


# ----------------------------------------------------------------------------- release fidelity
def test_switchable_bn_is_a_private_batchnorm_per_width_as_the_release() -> None:
    """The release's USBatchNorm2d: ``bn = ModuleList([BatchNorm2d(c, affine=True) for c])``."""
    widths = (4, 8, 12, 16)
    bn = SlimBatchNorm2d(16, channel_choices=widths)
    release = nn.ModuleList([nn.BatchNorm2d(c, affine=True) for c in widths])  # its layout
    ours = {k: tuple(v.shape) for k, v in bn.state_dict().items()}
    assert ours == {f"bn.{k}": tuple(v.shape) for k, v in release.state_dict().items()}
    params = dict(bn.named_parameters())
    assert sum(p.numel() for p in params.values()) == 2 * sum(widths)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 5, 6, generator=gen) * 2 + 1
    for c in widths:  # random γ, β and statistics per width
        state = {
            "weight": torch.rand(c, generator=gen) + 0.5,
            "bias": torch.randn(c, generator=gen),
            "running_mean": torch.randn(c, generator=gen),
            "running_var": torch.rand(c, generator=gen) + 0.5,
            "num_batches_tracked": torch.tensor(0),
        }
        bn.bn[widths.index(c)].load_state_dict(state)
        if c == 8:
            oracle = nn.BatchNorm2d(8)
            oracle.load_state_dict(state)
    torch.testing.assert_close(bn.eval()(x), oracle.eval()(x))
    y = bn.train()(x)
    torch.testing.assert_close(y, oracle.train()(x))
    torch.testing.assert_close(bn.bn[1].running_mean, oracle.running_mean)
    torch.testing.assert_close(bn.bn[1].running_var, oracle.running_var)
    # γ/β of width 8 are its own: the widest BN's first 8 channels do not move with it
    (y * torch.randn(y.shape, generator=gen)).sum().backward()
    assert float(params["bn.1.weight"].grad.abs().sum()) > 0
    for name, p in params.items():  # every parameter takes part (plain DDP), idle ones at 0
        assert p.grad is not None, name
        if not name.startswith("bn.1."):
            assert float(p.grad.abs().sum()) == 0.0, name


def test_shared_affine_checkpoints_load_into_private_batchnorms() -> None:
    torch.manual_seed(0)
    old = make_fasterseg_op(
        "conv_2x", 8, 12, 1, in_choices=(5, 8), out_choices=(7, 12), shared_bn_affine=True
    )
    _randomize_bn(old)
    new = make_fasterseg_op("conv_2x", 8, 12, 1, in_choices=(5, 8), out_choices=(7, 12))
    new.load_state_dict(old.state_dict())  # strict: every key converted
    x = torch.randn(2, 5, 6, 7)
    for c in (7, 12):
        torch.testing.assert_close(new.eval()(x, c_out=c), old.eval()(x, c_out=c))


@pytest.mark.parametrize("op", ["conv_downup", "conv_2x_downup"])
def test_zoomed_conv_runs_at_the_release_floor_size_on_odd_inputs(op: str) -> None:
    """The release: ``interpolate(x, size=(H // 2, W // 2))`` → convs → back to ``H × W``."""
    torch.manual_seed(0)
    module = make_fasterseg_op(op, 4, 6, 1).eval()
    _randomize_bn(module)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
    x = torch.randn(2, 4, 9, 13)

    def bilinear(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

    out = module.bn1(module.conv1(bilinear(x, (4, 6))))  # 9 // 2, 13 // 2
    if module.conv2 is not None:
        out = module.bn2(module.conv2(F.relu(out)))
    torch.testing.assert_close(module(x), F.relu(bilinear(out, (9, 13))))
    tiny = make_fasterseg_op(op, 4, 6, 1).eval()  # floor(1 / 2) = 0: at least 1
    assert tuple(tiny(torch.randn(1, 4, 1, 3)).shape) == (1, 6, 1, 3)
