"""Tests of the FasterSeg genotype kind, its discrete network and its latency configurations."""

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import (
    FasterSegGenotype,
    GenotypeError,
    build_network,
    from_dict,
    load,
    save,
)
from lightning_nas.latency import LatencyTable, build_op
from lightning_nas.methods.fasterseg.latency import build_latency_op
from lightning_nas.methods.fasterseg.network import (
    fasterseg_latency_configs,
    fasterseg_plan,
    head_latency_configs,
)
from lightning_nas.methods.fasterseg.ops import FASTERSEG_PRIMITIVES, FasterSegConv, Head
from lightning_nas.networks import FasterSegNetwork
from lightning_nas.summary import summarize, summarize_genotype

GENOTYPES = Path(__file__).resolve().parents[3] / "experiments" / "genotypes"
PUBLISHED = GENOTYPES / "fasterseg_cityscapes.yaml"

# reference §3.4, the published student
OPS_32 = ("conv_2x", "conv_2x", "conv_2x_downup", "conv_downup") + ("conv_2x_downup",) * 6
OPS_16 = ("conv_2x", "conv_2x", "conv_2x_downup", "conv_2x_downup", "conv_2x", "conv_2x") + (
    "conv_2x_downup",
) * 3
STUDENT = FasterSegGenotype(
    ops=(OPS_32, OPS_16),
    paths=((0, 0, 0, 0, 1, 1, 1, 1, 2, 2), (0, 0, 0, 0, 0, 0, 1, 1, 1)),
    widths=((4, 4, 4, 8, 4, 4, 4, 4, 4), (4, 4, 4, 4, 4, 4, 4, 12)),
    stem_head_width=(8, 8),
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Many tiny convs: one intra-op thread is far faster on a shared, loaded CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _meta_network(**kwargs) -> FasterSegNetwork:
    with torch.device("meta"):
        return build_network(PUBLISHED, num_classes=19, **kwargs)


def _genotype(ops, paths, widths, stem_head_width=(12, 12)) -> FasterSegGenotype:
    return FasterSegGenotype(ops=ops, paths=paths, widths=widths, stem_head_width=stem_head_width)


# ----------------------------------------------------------------------------- genotype
def test_published_file_matches_reference() -> None:
    g = load(PUBLISHED)
    assert g == STUDENT
    assert g.lasts == (2, 1) and g.num_branches == 2
    assert g.downs(0) == (0, 0, 0, 1, 0, 0, 0, 1, 0, 0)
    assert g.downs(1) == (0, 0, 0, 0, 0, 1, 0, 0, 0)
    assert isinstance(g.ops[0], tuple) and isinstance(g.stem_head_width, tuple)


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "g" / "fasterseg.yaml"
    save(STUDENT, path)
    assert load(path) == STUDENT
    d = STUDENT.to_dict()
    assert list(d) == ["kind", "version", "ops", "paths", "widths", "stem_head_width"]
    assert d["kind"] == "fasterseg" and d["version"] == 1 and d["stem_head_width"] == [8, 8]
    assert from_dict(d) == STUDENT
    lists = _genotype([["conv"]], [[0]], [[]])  # lists are converted; default stem/head width
    assert lists.ops == (("conv",),) and lists.widths == ((),)
    assert lists.stem_head_width == (12, 12)


def _edit(**changes):
    d = STUDENT.to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize(
    ("d", "message"),
    [
        pytest.param(
            _edit(paths=[[0, 0, 0, 0, 1, 1, 1, 1, 2, 2], [0, 0, 0, 2, 2, 2, 2, 2, 2]]),
            "<dict>: paths[1][3]: scale 2 after scale 0; expected 0 or 1",
            id="jump",
        ),
        pytest.param(
            _edit(paths=[[0, 0, 0, 0, 1, 1, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0, 1, 0, 1]]),
            "<dict>: paths[1][7]: scale 0 after scale 1; expected 1 or 2",
            id="up",
        ),
        pytest.param(
            _edit(paths=[[1, 1, 1, 1, 1, 1, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0, 1, 1, 1]]),
            "<dict>: paths[0][0]: got 1; expected 0 (paths start at 1/8)",
            id="start",
        ),
        pytest.param(
            _edit(paths=[[0, 0, 0, 0, 1, 1, 1, 1, 2, 3], [0, 0, 0, 0, 0, 0, 1, 1, 1]]),
            "<dict>: paths[0][9]: got 3; expected a scale index 0..2",
            id="scale",
        ),
        pytest.param(
            _edit(ops=[OPS_32, [*OPS_16[:4], "sep_conv_3x3", *OPS_16[5:]]]),
            "<dict>: ops[1][4]: unknown op 'sep_conv_3x3'; expected one of skip, conv, "
            "conv_downup, conv_2x, conv_2x_downup",
            id="op",
        ),
        pytest.param(
            _edit(widths=[[4, 4, 4, 8, 4, 4, 4, 4, 4], [4, 4, 4, 4, 4, 4, 4, 13]]),
            "<dict>: widths[1][7]: got 13; expected an integer 1..12",
            id="width",
        ),
        pytest.param(
            _edit(widths=[[4, 4, 4, 8, 4, 4, 4, 4, 4], [4, 4, 4]]),
            "<dict>: widths[1]: got 3 widths; expected 8 (every cell but the last)",
            id="widths-length",
        ),
        pytest.param(
            _edit(paths=[[0, 0, 0, 0, 1, 1, 1, 1, 2, 2], [0, 0, 0]]),
            "<dict>: paths[1]: got 3 scales; expected 9 (one per cell, as ops[1])",
            id="path-length",
        ),
        pytest.param(
            _edit(paths=[[0, 0, 0, 0, 1, 1, 1, 1, 2, 2], [0, 0, 0, 0, 0, 1, 1, 2, 2]]),
            "<dict>: paths[1]: ends at scale 2, as branch 0 does; expected branches ending at "
            "distinct scales",
            id="same-last",
        ),
        pytest.param(
            _edit(ops=[OPS_32] * 4, paths=[[0] * 10] * 4, widths=[[4] * 9] * 4),
            "<dict>: ops: got 4 branches; expected 1..3",
            id="branches",
        ),
        pytest.param(_edit(ops=[], paths=[], widths=[]), "<dict>: ops: got 0 branches", id="none"),
        pytest.param(
            _edit(widths=[[4, 4, 4, 8, 4, 4, 4, 4, 4]]),
            "<dict>: widths: got 1 branches; expected 2 (as ops)",
            id="branch-count",
        ),
        pytest.param(
            _edit(stem_head_width=[8, 0]),
            "<dict>: stem_head_width[1]: got 0; expected an integer 1..12",
            id="head-width",
        ),
        pytest.param(
            _edit(ops="conv"), "<dict>: ops: got str; expected a list per branch", id="type"
        ),
    ],
)
def test_validation_errors_name_the_key(d: dict, message: str) -> None:
    with pytest.raises(GenotypeError) as err:
        from_dict(d)
    assert str(err.value).startswith(message)


def test_validation_of_directly_built_genotypes() -> None:
    with pytest.raises(GenotypeError, match=r"^<FasterSegGenotype>: paths\[0\]\[1\]"):
        _genotype([["conv", "conv"]], [[0, 2]], [[4]])
    with pytest.raises(GenotypeError, match=r"widths\[0\]\[0\]: got 4\.0"):
        _genotype([["conv", "conv"]], [[0, 1]], [[4.0]])


# ----------------------------------------------------------------------------- published network
# Reference §3.6 (thop on the release): 27.77 GMACs conv-only; 4.386M parameters counting every
# leaf module, i.e. including the auxiliary heads (built by the release in training mode) and the
# unused FeatureFusion channel attention; 3.422M without those unused modules. The attention
# (two bias-free 1x1 convs 128 -> 128) is not built here: 2 * 128 * 128 parameters.
RELEASE_ATTENTION = 2 * 128 * 128


def test_published_params_and_multi_adds() -> None:
    net = _meta_network()
    s = summarize(net, input_size=(1024, 2048))
    assert abs(s.multi_adds / 27.77e9 - 1) < 0.02
    assert round(s.multi_adds / 1e9, 2) == 27.77  # the same conv MACs as the release
    aux = sum(p.numel() for n, p in net.named_parameters() if n.startswith(("heads16", "heads32")))
    assert abs((s.params + RELEASE_ATTENTION) / 4.386e6 - 1) < 0.03
    assert round((s.params + RELEASE_ATTENTION) / 1e6, 3) == 4.386
    assert abs((s.params - aux) / 3.422e6 - 1) < 0.03
    assert round((s.params - aux) / 1e6, 3) == 3.422
    no_aux = summarize(_meta_network(aux_heads=False), input_size=(1024, 2048))
    assert no_aux.params == s.params - aux and no_aux.multi_adds == s.multi_adds
    assert summarize_genotype(PUBLISHED, input_size=(1024, 2048)).params == s.params


def test_published_cells_match_reference() -> None:
    plan = fasterseg_plan(STUDENT)
    cells = [(c.layer, c.branches, c.op, c.scale, c.stride, c.C_in, c.C_out) for c in plan.cells]
    assert cells == [
        (0, (0, 1), "conv_2x", 8, 1, 64, 32),
        (1, (0, 1), "conv_2x", 8, 1, 32, 32),
        (2, (0, 1), "conv_2x_downup", 8, 1, 32, 32),
        (3, (0,), "conv_downup", 8, 2, 32, 128),
        (3, (1,), "conv_2x_downup", 8, 1, 32, 32),
        (4, (0,), "conv_2x_downup", 16, 1, 128, 64),
        (4, (1,), "conv_2x", 8, 1, 32, 32),
        (5, (0,), "conv_2x_downup", 16, 1, 64, 64),
        (5, (1,), "conv_2x", 8, 2, 32, 64),
        (6, (0,), "conv_2x_downup", 16, 1, 64, 64),
        (6, (1,), "conv_2x_downup", 16, 1, 64, 64),
        (7, (0,), "conv_2x_downup", 16, 2, 64, 128),
        (7, (1,), "conv_2x_downup", 16, 1, 64, 192),
        (8, (0,), "conv_2x_downup", 32, 1, 128, 128),
        (8, (1,), "conv_2x_downup", 16, 1, 192, 128),
        (9, (0,), "conv_2x_downup", 32, 1, 128, 256),
    ]
    assert plan.stem == (32, 64, 64)
    assert (plan.ch_16, plan.ch_8_2, plan.ch_8_1) == (64, 32, 32)
    assert plan.head == (64, 128, 256) and plan.fusion == (128, 128)
    assert plan.aux16 == 64 + 128 and plan.aux32 == 256


def test_published_network_modules() -> None:
    net = _meta_network()
    plan = net.plan
    assert len(net.cells) == len(plan.cells) == 16  # 3 shared + 7 + 6
    for spec, cell in zip(plan.cells, net.cells):
        assert isinstance(cell, FasterSegConv)
        assert (cell.C_in, cell.C_out, cell.stride) == (spec.C_in, spec.C_out, spec.stride)
        assert cell.conv1.in_channels == spec.C_in and cell.conv1.out_channels == spec.C_out
        assert cell.zoomed == spec.op.endswith("downup")
        assert (cell.conv2 is not None) == spec.op.startswith("conv_2x")
    stem = net.stem
    assert (stem[0].conv.in_channels, stem[0].conv.out_channels, stem[0].conv.stride) == (
        3,
        32,
        (2, 2),
    )
    assert [(m.C_in, m.C_out, m.stride) for m in stem[1:]] == [(32, 64, 2), (64, 64, 2)]
    assert not stem[1].zoomed and stem[1].conv2 is not None  # conv_2x
    r32, r16 = net.refines
    assert [(m.conv.in_channels, m.conv.out_channels) for m in r32.reduce] == [
        (256, 128),
        (128, 64),
    ]
    assert [(m.conv.in_channels, m.conv.out_channels) for m in r32.fuse] == [(192, 128), (96, 64)]
    assert [m.conv.kernel_size for m in r32.fuse] == [(3, 3), (3, 3)]
    assert [(m.conv.in_channels, m.conv.out_channels) for m in r16.reduce] == [(128, 64)]
    assert [(m.conv.in_channels, m.conv.out_channels) for m in r16.fuse] == [(96, 64)]
    assert (net.ffm.conv.in_channels, net.ffm.conv.out_channels) == (128, 128)
    assert net.ffm.conv.kernel_size == (1, 1)
    assert net.heads8.conv.conv.in_channels == 128 and net.heads8.classifier.out_channels == 19
    assert net.heads16.conv.conv.in_channels == 192 and net.heads32.conv.conv.in_channels == 256
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d | nn.Sigmoid) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert {m for m in convs if m.bias is not None} == {
        net.heads8.classifier,
        net.heads16.classifier,
        net.heads32.classifier,
    }


def test_published_stage_shapes() -> None:
    s = summarize(_meta_network(), input_size=(1024, 2048))
    assert s.stages["stem"] == (64, 128, 256)
    assert s.stages["cell2_b01"] == (32, 128, 256)
    assert s.stages["cell3_b0"] == (128, 64, 128)  # shared cells end at layer 2
    assert s.stages["cell9_b0"] == (256, 32, 64) and s.stride("cell9_b0") == 32
    assert s.stages["cell8_b1"] == (128, 64, 128) and s.stride("cell8_b1") == 16
    assert s.stages["refine_b0"] == s.stages["refine_b1"] == (64, 128, 256)
    assert s.stages["ffm"] == (128, 128, 256)
    assert s.stages["logits"] == (19, 1024, 2048)


def test_shared_cells_run_once_on_one_feature() -> None:
    torch.manual_seed(0)
    net = FasterSegNetwork(STUDENT, num_classes=3, Fch=2).eval()
    calls: dict[int, list[tuple[int, int]]] = {}

    def record(i):
        def hook(module, args, output):
            calls.setdefault(i, []).append((id(args[0]), id(output)))

        return hook

    for i, cell in enumerate(net.cells):
        cell.register_forward_hook(record(i))
    net(torch.randn(1, 3, 64, 96))
    assert all(len(v) == 1 for v in calls.values()) and len(calls) == 16
    names = [c.name for c in net.plan.cells]
    shared_out = calls[names.index("cell2_b01")][0][1]
    # both branches' layer-3 cells read the one output of the shared layer-2 cell
    assert calls[names.index("cell3_b0")][0][0] == shared_out
    assert calls[names.index("cell3_b1")][0][0] == shared_out
    assert calls[names.index("cell4_b1")][0][0] == calls[names.index("cell3_b1")][0][1]


# ----------------------------------------------------------------------------- small networks
@pytest.mark.parametrize("size", [(64, 96), (67, 99)])
def test_forward_small_input(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = build_network(str(PUBLISHED), num_classes=5, Fch=2)
    assert isinstance(net, FasterSegNetwork)
    x = torch.randn(2, 3, *size)
    out = net(x)  # training mode: still only the main logits
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, *size)
    out.mean().backward()
    used = {n for n, p in net.named_parameters() if p.grad is not None}
    unused = {n for n, _ in net.named_parameters()} - used
    assert unused and all(n.startswith(("heads16.", "heads32.")) for n in unused)
    main, aux16, aux32 = net.eval().forward_aux(x[:1])
    assert main.shape == aux16.shape == aux32.shape == (1, 5, *size)
    torch.testing.assert_close(main, net(x[:1]))


def test_forward_aux_gradients_and_no_aux_heads() -> None:
    torch.manual_seed(0)
    net = FasterSegNetwork(STUDENT, num_classes=4, Fch=2)
    main, aux16, aux32 = net.forward_aux(torch.randn(2, 3, 32, 48))
    (main.mean() + aux16.mean() + aux32.mean()).backward()
    assert all(p.grad is not None for p in net.parameters())
    bare = FasterSegNetwork(STUDENT, num_classes=4, Fch=2, aux_heads=False)
    assert bare.heads16 is None and bare.heads32 is None
    main, aux16, aux32 = bare.eval().forward_aux(torch.randn(1, 3, 32, 48))
    assert main.shape == (1, 4, 32, 48) and aux16 is None and aux32 is None


def test_branch_ending_at_one_eighth() -> None:
    g = _genotype(
        [["conv", "skip", "conv", "conv_2x", "conv_downup"], ["conv", "skip", "conv"]],
        [[0, 0, 0, 1, 2], [0, 0, 0]],
        [[6, 6, 6, 6], [6, 6]],
    )
    assert g.lasts == (2, 0)
    plan = fasterseg_plan(g, Fch=2)
    # layers 0 and 1 shared (same op, width, next scale); branch 1 ends at layer 2
    assert [(c.layer, c.branches, c.C_in, c.C_out, c.stride) for c in plan.cells] == [
        (0, (0, 1), 16, 8, 1),
        (1, (0, 1), 8, 8, 1),
        (2, (0,), 8, 16, 2),
        (2, (1,), 8, 16, 1),
        (3, (0,), 16, 32, 2),
        (4, (0,), 32, 64, 1),
    ]
    assert plan.stem == (8, 16, 16) and plan.head == (16, 32, 64)
    assert plan.refine_steps(1) == () and plan.ch_8_1 is None
    assert (plan.ch_16, plan.ch_8_2) == (16, 8)  # inputs of the down cells of branch 0
    assert plan.refine_steps(0) == ((64, 32, 16, 32), (32, 16, 8, 16))
    assert plan.aux16 == 16 and plan.aux32 == 64
    torch.manual_seed(0)
    net = FasterSegNetwork(g, num_classes=3, Fch=2)
    assert isinstance(net.cells[1], nn.Identity)  # fixed stride-1 skip keeping the width
    stages = net.eval().forward_stages(torch.randn(1, 3, 41, 57))
    assert stages["refine_b1"].shape[1] == plan.head[0]
    assert stages["logits"].shape == (1, 3, 41, 57)
    main, aux16, aux32 = net.forward_aux(torch.randn(1, 3, 41, 57))
    assert aux16.shape == aux32.shape == main.shape


def test_single_branch_and_three_branches() -> None:
    one = _genotype([["conv_2x", "conv", "skip"]], [[0, 1, 2]], [[12, 12]])
    net = FasterSegNetwork(one, num_classes=2, Fch=2)
    assert net.plan.lasts == (2,) and net.plan.fusion == (16, 16)  # nf8 · branches
    assert net.heads16.conv.conv.in_channels == net.plan.ch_16 == 32
    assert net(torch.randn(1, 3, 35, 29)).shape == (1, 2, 35, 29)
    assert [c.op for c in fasterseg_latency_configs(one, 2, (35, 29), Fch=2)].count("concat") == 0

    three = _genotype(
        [["conv", "conv", "conv", "conv"], ["conv", "conv", "conv_2x"], ["conv", "conv_2x"]],
        [[0, 1, 1, 2], [0, 1, 1], [0, 0]],
        [[6, 6, 6], [6, 6], [6]],
    )
    plan = fasterseg_plan(three, Fch=2)
    assert three.lasts == (2, 1, 0)
    assert [(c.layer, c.branches) for c in plan.cells] == [
        (0, (0, 1)),  # branch 2 stays at 1/8: it splits at once
        (0, (2,)),
        (1, (0, 1)),
        (1, (2,)),
        (2, (0,)),  # branch 1 ends at layer 2: its last cell is its own
        (2, (1,)),
        (3, (0,)),
    ]
    torch.manual_seed(0)
    net = FasterSegNetwork(three, num_classes=3, Fch=2).eval()
    assert net.plan.fusion == (3 * plan.head[0], 3 * plan.head[0])
    assert net.heads16.conv.conv.in_channels == plan.features[0][1] + plan.features[1][1]
    assert net(torch.randn(2, 3, 50, 66)).shape == (2, 3, 50, 66)


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="FasterSegGenotype"):
        FasterSegNetwork(GENOTYPES / "darts_v2.yaml")
    with pytest.raises(ConfigError, match="Fch must be an integer >= 1"):
        FasterSegNetwork(STUDENT, Fch=0)
    with pytest.raises(ConfigError, match="num_classes"):
        FasterSegNetwork(STUDENT, num_classes=0)


def test_onnx_export_any_size(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = FasterSegNetwork(STUDENT, num_classes=3, Fch=2).eval()
    path = tmp_path / "fasterseg.onnx"
    # the TorchScript exporter is ~10x faster than the dynamo one; both were checked to give
    # the same numbers on odd sizes (the sizes are computed from the input shape, no branches).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net,
            (torch.randn(1, 3, 64, 96),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}},
        )
    session = ort.InferenceSession(str(path))
    for shape in [(1, 3, 64, 96), (2, 3, 67, 99)]:
        x = torch.randn(*shape)
        (y,) = session.run(None, {"image": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(y), net(x), atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- latency configs
def test_latency_configs_follow_the_plan() -> None:
    configs = fasterseg_latency_configs(STUDENT, 19, (1024, 2048))
    plan = fasterseg_plan(STUDENT)
    cells = [c for c in configs if c.op.removeprefix("fs_") in FASTERSEG_PRIMITIVES]
    assert len(cells) == len(plan.cells) == 16  # shared cells once
    assert [(c.C_in, c.C_out, c.stride) for c in cells] == [
        (p.C_in, p.C_out, p.stride) for p in plan.cells
    ]
    assert [c.H for c in cells] == [1024 // p.scale for p in plan.cells]
    assert configs[0].key == "fs_stem|Cin=3|Cout=64|H=1024|W=2048|stride=8"
    assert [c.key for c in configs[-4:]] == [
        "concat|Cin=64|Cout=128|H=128|W=256|stride=1",
        "fs_convnorm1x1|Cin=128|Cout=128|H=128|W=256|stride=1",
        "fs_head|Cin=128|Cout=19|H=128|W=256|stride=1",
        "fs_upsample|Cin=19|Cout=19|H=1024|W=2048|stride=8",
    ]
    assert sum(c.op == "fs_up2_concat" for c in configs) == 3  # 2 (1/32 branch) + 1 (1/16)
    # the space's head configs cover every head piece of this network
    head = {c.key for c in head_latency_configs(19, (1024, 2048), 12, 8, [32, 64], [64, 128])}
    assert {c.key for c in configs[17:]} <= head


def build_fs(config):
    """``build_op`` with FasterSeg's op builder (what a table build for the space uses)."""
    return build_op(config, (build_latency_op,))


def _run_config(config) -> tuple[int, ...]:
    module, shapes = build_fs(config)
    with torch.no_grad():
        out = module.eval()(*[torch.randn(1, *s) for s in shapes])
    return tuple(out.shape[1:])


def test_latency_configs_build_and_match_the_network() -> None:
    """Every entry builds and runs; the entries' modules do the network's exact work."""
    size = (67, 99)
    net = FasterSegNetwork(STUDENT, num_classes=3, Fch=2).eval()
    configs = fasterseg_latency_configs(STUDENT, 3, size, Fch=2)
    inputs = []
    for cell in net.cells:
        cell.register_forward_hook(lambda m, a, o: inputs.append(tuple(a[0].shape[1:])))
    x = torch.randn(1, 3, *size)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            net(x)
    cell_configs = [c for c in configs if c.op.removeprefix("fs_") in FASTERSEG_PRIMITIVES]
    assert [(c.C_in, c.H, c.W) for c in cell_configs] == inputs
    macs = 0
    for config in configs:
        module, shapes = build_fs(config)
        with FlopCounterMode(display=False) as op_counter:
            with torch.no_grad():
                out = module.eval()(*[torch.randn(1, *s) for s in shapes])
        macs += op_counter.get_total_flops()
        assert out.shape[1] == config.C_out
    assert out.shape == (1, 3, *size)  # the last entry: logits at the input size
    assert macs == counter.get_total_flops()
    # table estimate = sum of the entries (repeats included)
    table = LatencyTable.build(configs, input_size=size, measure=lambda c: 1.0, progress=False)
    assert table.total(configs) == len(configs) > len(table)


def test_fasterseg_blocks_of_build_op() -> None:
    assert _run_config(fasterseg_latency_configs(STUDENT, 19, (67, 99))[0]) == (64, 9, 13)
    from lightning_nas.latency import OpConfig

    # the stem's width unit can be given exactly (Fch = 2, r = 8/12: not an integer)
    stem = OpConfig("fs_stem", 3, 11, 16, 16, 8, expansion=2 * 8 / 12)
    assert [m.C_out for m in build_fs(stem)[0][1:]] == [10, 11]
    assert _run_config(OpConfig("fs_up2_concat", 4, 10, 9, 13, 2)) == (10, 9, 13)
    assert _run_config(OpConfig("fs_upsample", 3, 3, 67, 99, 8)) == (3, 67, 99)
    assert _run_config(OpConfig("fs_convnorm3x3", 4, 6, 9, 13)) == (6, 9, 13)
    assert isinstance(build_fs(OpConfig("fs_head", 8, 19, 4, 4))[0], Head)
    assert _run_config(OpConfig("fs_skip", 4, 6, 9, 13, 2)) == (6, 5, 7)
    with pytest.raises(ValueError, match="fs_stem has stride 8"):
        build_fs(OpConfig("fs_stem", 3, 64, 64, 64, 4))
    with pytest.raises(ValueError, match="C_out > C_in"):
        build_fs(OpConfig("fs_up2_concat", 4, 4, 8, 8, 2))
    with pytest.raises(ValueError, match="unknown FasterSeg op 'fs_conv_3x'.*fs_conv_2x"):
        build_fs(OpConfig("fs_conv_3x", 4, 4, 8, 8))
