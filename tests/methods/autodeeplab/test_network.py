"""Tests of the discrete Auto-DeepLab network (the official release's ``hnasnet`` + DeepLabv3+)."""

from pathlib import Path

import pytest
import torch
from torch import nn

import lightning_nas.methods.autodeeplab.network as adl
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import AutoDeepLabGenotype, build_network, load
from lightning_nas.methods.autodeeplab.network import aspp_rates, low_level_cell
from lightning_nas.networks import AutoDeepLabNetwork
from lightning_nas.ops import AtrousConv, Identity, ReLUConvBN, SepConv
from lightning_nas.summary import summarize

GENOTYPES = Path(__file__).resolve().parents[3] / "experiments" / "genotypes"
PUBLISHED = GENOTYPES / "autodeeplab_cityscapes.yaml"
SMALL = {"aspp_channels": 8, "decoder_channels": 8, "low_level_channels": 4}


@pytest.fixture(autouse=True)
def _one_thread():
    """Hundreds of tiny convs: one intra-op thread is far faster on a shared, loaded CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _genotype(path: tuple[int, ...], cell=None) -> AutoDeepLabGenotype:
    return AutoDeepLabGenotype(cell=cell or load(PUBLISHED).cell, path=path)


def _meta_network(**kwargs) -> AutoDeepLabNetwork:
    with torch.device("meta"):
        return build_network(load(PUBLISHED), num_classes=19, **kwargs)


# Paper Table 2 (Cityscapes, 1024x2048): F -> (params in M, Multi-Adds in B); reference §1.6
# counts 10.147 / 21.622 / 44.425 M with conv weights + BN gamma/beta.
PAPER = {20: (10.15, 333.25), 32: (21.62, 460.93), 48: (44.42, 695.03)}
COUNTED = {20: 10.147, 32: 21.622, 48: 44.425}


@pytest.mark.parametrize("F", [20, 32, 48])
def test_published_params_and_multi_adds(F: int) -> None:
    net = _meta_network(filter_multiplier=F)
    params, multi_adds = PAPER[F]
    s = summarize(net, input_size=(1024, 2048))
    assert s.params == sum(p.numel() for p in net.parameters())
    assert abs(s.params / 1e6 - params) / params < 0.005
    assert round(s.params / 1e6, 3) == COUNTED[F]
    assert abs(s.multi_adds / 1e9 - multi_adds) / multi_adds < 0.08


def test_published_stages_channels_and_strides() -> None:
    net = _meta_network(filter_multiplier=20)
    path = load(PUBLISHED).path
    assert net.cell_channels == (100, 100, 100, 200, 400, 200, 400, 400, 800, 800, 400, 200)
    s = summarize(net, input_size=(1024, 2048))
    cells = [f"cell_{i}" for i in range(12)]
    assert [s.stages[c][0] for c in cells] == list(net.cell_channels)
    assert [s.stride(c) for c in cells] == [4 * 2**p for p in path] == list(net.cell_strides)
    assert s.stages["stem"] == (128, 256, 512)
    assert s.stages["aspp"] == (256, 128, 256)  # output stride 8
    assert s.stages["decoder"] == (256, 256, 512)
    assert s.stages["logits"] == (19, 1024, 2048)
    assert net.output_stride == 8 and net.low_level_cell == 2
    assert net.aspp.rates == (12, 24, 36)


def test_published_cell_ops_and_strides() -> None:
    net = _meta_network(filter_multiplier=20)
    cell3 = net.cells[3]  # level 0 -> 1: ops reading h[l-1] / h[l-2] use stride 2
    assert cell3.stride == 2
    kinds = [type(op) for op in cell3.ops]
    assert kinds == [AtrousConv, SepConv, SepConv, AtrousConv, SepConv, SepConv] + [SepConv] * 3 + [
        AtrousConv
    ]
    strided = [getattr(op, "stride", None) for op in cell3.ops if isinstance(op, AtrousConv)]
    assert strided == [2, 2, 1]  # b0 left (h[l-2]), b1 right (h[l-1]), b4 right (b3)
    sep_strides = [op.op[1].stride[0] for op in cell3.ops if isinstance(op, SepConv)]
    assert sep_strides == [2, 2, 1, 2, 1, 1, 1]
    # full (non-separable) 5x5 conv with rate 2 at stride 1
    conv = net.cells[0].ops[0].op[1]
    assert conv.groups == 1 and conv.kernel_size == (5, 5) and conv.dilation == (2, 2)
    assert all(c.stride == 1 for i, c in enumerate(net.cells) if i not in (3, 4, 6, 8))
    assert isinstance(net.cells[0].preprocess0, ReLUConvBN)  # stem 64 ch -> 20
    # biases only on the logits conv; every BN affine
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [m for m in convs if m.bias is not None] == [net.decoder.classifier]
    assert all(m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_forward_small_input_and_gradients() -> None:
    torch.manual_seed(0)
    net = build_network(str(PUBLISHED), num_classes=7, filter_multiplier=4, **SMALL)
    assert isinstance(net, AutoDeepLabNetwork)
    x = torch.randn(2, 3, 65, 65)
    out = net(x)
    assert out.shape == (2, 7, 65, 65)
    out.mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    assert tuple(net(x[:1]).shape) == (1, 7, 65, 65)


@pytest.mark.parametrize(
    ("path", "low", "stride"),
    [
        ((0, 1, 2, 3, 3, 3), 0, 32),  # 6 layers ending at stride 32
        ((1, 2, 1, 0, 1, 2, 3), 3, 32),  # starts at stride 8, comes back to stride 4
        ((1, 1, 2), None, 16),  # never at stride 4: the decoder reads the stem
        ((0, 0), 0, 4),
    ],
)
def test_other_paths_build_and_run(path: tuple[int, ...], low: int | None, stride: int) -> None:
    torch.manual_seed(0)
    net = AutoDeepLabNetwork(_genotype(path), num_classes=3, filter_multiplier=2, **SMALL).eval()
    assert net.low_level_cell == low and net.output_stride == stride
    stages = net.forward_stages(torch.randn(1, 3, 50, 70))
    assert stages["logits"].shape == (1, 3, 50, 70)
    assert tuple(stages[f"cell_{len(path) - 1}"].shape[-2:]) == (
        -(-50 // stride),
        -(-70 // stride),
    )
    assert stages["decoder"].shape[-2:] == stages["stem"].shape[-2:]


def test_block_multiplier_and_identity_preprocess() -> None:
    cell = (("skip_connect", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 2), ("max_pool_3x3", 1))
    g = AutoDeepLabGenotype(cell=cell, path=(0, 0, 1, 0))
    net = AutoDeepLabNetwork(g, num_classes=3, filter_multiplier=4, block_multiplier=1, **SMALL)
    assert net.cell_channels == (4, 4, 8, 4)
    assert isinstance(net.cells[2].preprocess0, ReLUConvBN)  # 4 ch (level 0) -> 8 (level 1)
    assert isinstance(net.cells[3].preprocess0, Identity)  # h[l-2] already has filter_size
    assert tuple(net(torch.randn(2, 3, 32, 32)).shape) == (2, 3, 32, 32)


def test_scheduled_drop_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def record(x: torch.Tensor, p: float) -> torch.Tensor:
        calls.append(p)
        return x

    monkeypatch.setattr(adl, "drop_path", record)
    g = _genotype((0, 1, 1, 0))
    net = AutoDeepLabNetwork(g, num_classes=3, filter_multiplier=2, drop_path_prob=0.4, **SMALL)
    net(torch.randn(2, 3, 32, 32))
    per_cell = [sorted(set(calls[i * 10 : (i + 1) * 10])) for i in range(4)]
    assert per_cell == [[pytest.approx(0.4 * (i + 1) / 4)] for i in range(4)]
    calls.clear()
    net.eval()(torch.randn(1, 3, 32, 32))
    assert calls == []


def test_helpers() -> None:
    assert aspp_rates(16) == (6, 12, 18) and aspp_rates(32) == (3, 6, 9)
    assert low_level_cell(load(PUBLISHED).path) == 2
    assert low_level_cell((0, 1, 0, 1, 2, 3)) == 2
    assert low_level_cell((0, 0, 0)) == 0


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="AutoDeepLabGenotype"):
        AutoDeepLabNetwork(GENOTYPES / "darts_v2.yaml")
    with pytest.raises(ConfigError, match="block_multiplier"):
        AutoDeepLabNetwork(PUBLISHED, block_multiplier=6)
    with pytest.raises(ConfigError, match="filter_multiplier"):
        AutoDeepLabNetwork(PUBLISHED, filter_multiplier=0)
    with pytest.raises(ConfigError, match="drop_path_prob"):
        AutoDeepLabNetwork(PUBLISHED, drop_path_prob=1.0)
    g = AutoDeepLabGenotype(cell=load(PUBLISHED).cell, path=(0, 1), strides=(8, 16))
    with pytest.raises(ConfigError, match="strides"):
        AutoDeepLabNetwork(g)
