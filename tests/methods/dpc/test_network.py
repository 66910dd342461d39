"""DPC's cell, head and network: the published sizes, the wiring, the encoder feature."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import build_network, load
from lightning_nas.methods.darts.genotype import DartsGenotype
from lightning_nas.methods.dpc.genotype import DPCGenotype
from lightning_nas.methods.dpc.network import DPCCell, DPCHead, DPCNetwork
from lightning_nas.methods.dpc.ops import BN_EPS, BN_MOMENTUM, PyramidPooling, SeparableAtrousConv

PUBLISHED = (
    Path(__file__).resolve().parents[3] / "experiments" / "genotypes" / "dpc_cityscapes.yaml"
)

MIXED = DPCGenotype(
    branches=(
        (-1, "conv1x1", (1, 1)),
        (0, "pyramid_pooling", (2, 8)),
        (-1, "sep_conv3x3", (21, 3)),
        (1, "pyramid_pooling", (1, 1)),
        (0, "sep_conv3x3", (9, 12)),
    )
)


def _branch_conv_params(cell: DPCCell) -> int:
    return sum(m.weight.numel() for m in cell.branches.modules() if isinstance(m, nn.Conv2d))


def _branch_madds(cell: DPCCell, feature: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        cell.forward_branches(feature)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize(
    ("in_channels", "params", "with_projection_and_bn"),
    [(2048, 0.8141e6, 1.151e6), (320, 0.3562e6, 0.690e6)],
    ids=["xception-2048", "mobilenetv2-320"],
)
def test_published_cell_parameters(in_channels, params, with_projection_and_bn) -> None:
    """reference.md §4.5: depthwise + pointwise conv weights of the branches (no BN, no
    concat projection) 0.8141M / 0.3562M (paper Table 1: 0.81M / 0.36M); 1.151M / 0.690M with
    the projection and every BN's scale and shift."""
    with torch.device("meta"):
        cell = DPCCell(load(PUBLISHED), in_channels)
    counted = _branch_conv_params(cell)
    assert counted == 9 * in_channels + 256 * in_channels + 4 * (9 * 256 + 256 * 256)
    assert counted == pytest.approx(params, rel=0.005)
    assert sum(p.numel() for p in cell.parameters()) == pytest.approx(
        with_projection_and_bn, rel=0.005
    )


@pytest.mark.parametrize(
    ("in_channels", "madds"), [(2048, 6.826e9), (320, 2.986e9)], ids=["xception", "mobilenetv2"]
)
def test_published_cell_multiply_adds_count_the_branches_only(in_channels, madds) -> None:
    """reference.md §4.5: 6.826B / 2.986B multiply-adds on the 65×129 feature (OS 16 of
    1025×2049; paper Table 1: 6.84B / 3.00B). They are the **branches'** convolutions
    (``FlopCounterMode`` FLOPs / 2 over ``forward_branches``): with the 1×1 concat projection
    (1280 → 256, +2.75B) the count is 40 % (Xception) to 92 % (MobileNet-v2) above the figure."""
    with torch.device("meta"):
        cell = DPCCell(load(PUBLISHED), in_channels)
        feature = torch.empty(1, in_channels, 65, 129)
    assert _branch_madds(cell, feature) == pytest.approx(madds, rel=0.005)
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        cell(feature)
    with_projection = counter.get_total_flops() / 2
    assert with_projection - _branch_madds(cell, feature) == 1280 * 256 * 65 * 129
    assert with_projection > 1.3 * madds


@pytest.mark.parametrize(
    ("encoder_name", "channels", "madds"),
    [("tu-mobilenetv2_100", 320, 2.986e9), ("tu-xception71", 2048, 6.826e9)],
)
def test_the_encoders_os_16_feature(encoder_name, channels, madds) -> None:
    """``tu-mobilenetv2_100`` (default) and ``tu-xception71`` at depth 5 and OS 16: 320 / 2048
    channels, 65×129 at 1025×2049 and 49×49 at 769×769; the cell on it has the published
    multiply-adds."""
    with torch.device("meta"):
        net = DPCNetwork(PUBLISHED, num_classes=19, encoder_name=encoder_name)
        full = net.encoder(torch.empty(1, 3, 1025, 2049))[-1]
        crop = net.encoder(torch.empty(1, 3, 769, 769))[-1]
    assert tuple(full.shape) == (1, channels, 65, 129)
    assert tuple(crop.shape) == (1, channels, 49, 49)
    assert net.encoder.out_channels[-1] == channels and net.output_stride == 16
    assert _branch_madds(net.head.cell, full) == pytest.approx(madds, rel=0.005)


def test_network_forward_gives_logits_at_the_input_size() -> None:
    torch.manual_seed(0)
    net = DPCNetwork(PUBLISHED, num_classes=7, encoder_name="tu-mobilenetv2_100",
                     encoder_weights=None, channels=32).eval()  # fmt: skip
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert tuple(net.encoder(x)[-1].shape) == (1, 320, 4, 4)
        logits = net(x)
    assert tuple(logits.shape) == (1, 7, 64, 64)
    assert torch.isfinite(logits).all()


def test_build_network_from_the_file() -> None:
    net = build_network(PUBLISHED, num_classes=3, channels=8, output_stride=8)
    assert isinstance(net, DPCNetwork) and net.genotype == load(PUBLISHED)
    assert net.head.cell.branches[1].depthwise.dilation == (36, 30)  # rates × 16 // 8
    assert tuple(net.eval()(torch.randn(1, 3, 32, 48)).shape) == (1, 3, 32, 48)


def test_head_on_a_cached_feature() -> None:
    torch.manual_seed(0)
    head = DPCHead(MIXED, num_classes=5, in_channels=320)
    out = head.eval()(torch.randn(2, 320, 9, 9))
    assert tuple(out.shape) == (2, 5, 9, 9)
    assert head.classifier.bias is not None and head.classifier.kernel_size == (1, 1)
    assert head.classifier.weight.abs().max() <= 0.02 and head.classifier.bias.eq(0).all()


def test_cell_wiring_concat_dropout_and_projection() -> None:
    torch.manual_seed(0)
    cell = DPCCell(MIXED, in_channels=6, channels=8).eval()
    assert [type(b) for b in cell.branches][1:3] == [PyramidPooling, SeparableAtrousConv]
    assert cell.branches[0].conv.in_channels == 6 and cell.branches[2].depthwise.in_channels == 6
    assert cell.branches[1].conv.in_channels == 8 and cell.branches[4].depthwise.in_channels == 8
    assert cell.concat_projection.conv.in_channels == 5 * 8
    assert cell.dropout.p == pytest.approx(0.1)
    assert all(m.momentum == BN_MOMENTUM and m.eps == BN_EPS
               for m in cell.modules() if isinstance(m, nn.BatchNorm2d))  # fmt: skip

    seen: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}

    def record(i: int):
        def hook(module: nn.Module, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
            seen[i], outputs[i] = inp[0], out

        return hook

    for i, branch in enumerate(cell.branches):
        branch.register_forward_hook(record(i))
    x = torch.randn(2, 6, 7, 5)
    with torch.no_grad():
        y = cell(x)
    assert tuple(y.shape) == (2, 8, 7, 5)
    for i, (inp, _, _) in enumerate(MIXED.branches):
        assert seen[i] is (x if inp < 0 else outputs[inp])
    with torch.no_grad():
        concat = torch.cat([outputs[i] for i in range(5)], dim=1)
        torch.testing.assert_close(y, cell.concat_projection(concat))


def test_bad_arguments_raise_config_errors() -> None:
    darts = DartsGenotype(
        normal=(("sep_conv_3x3", 0), ("skip_connect", 1)),
        normal_concat=(2,),
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        reduce_concat=(2,),
    )
    with pytest.raises(ConfigError, match="DPCNetwork: expected a DPCGenotype"):
        DPCNetwork(darts)
    with pytest.raises(ConfigError, match="output_stride must be 8 or 16, got 32"):
        DPCCell(PUBLISHED, 8, output_stride=32)
    with pytest.raises(ConfigError, match="dropout_keep must be in"):
        DPCHead(PUBLISHED, 3, 8, dropout_keep=0.0)
    with pytest.raises(ConfigError, match="encoder_depth 3 ends at stride 8"):
        DPCNetwork(PUBLISHED, encoder_depth=3)
