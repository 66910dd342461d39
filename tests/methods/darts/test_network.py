"""Tests of the discrete DARTS network built from a genotype."""

from pathlib import Path

import pytest
import torch

from lightning_nas.genotypes import DartsGenotype, build_network, load
from lightning_nas.networks import DartsNetwork
from lightning_nas.ops import FactorizedReduce, Identity, ReLUConvBN

GENOTYPES = Path(__file__).resolve().parents[3] / "experiments" / "genotypes"
V2 = GENOTYPES / "darts_v2.yaml"

# A genotype that uses every op, including a stride-2 skip (FactorizedReduce) in the reduce cell.
MIXED = DartsGenotype(
    normal=(("sep_conv_5x5", 0), ("dil_conv_5x5", 1), ("avg_pool_3x3", 2), ("sep_conv_3x3", 1)),
    normal_concat=(2, 3),
    reduce=(("skip_connect", 0), ("dil_conv_3x3", 1), ("max_pool_3x3", 2), ("skip_connect", 1),
            ("sep_conv_5x5", 3), ("skip_connect", 2)),
    reduce_concat=(2, 3, 4),
)  # fmt: skip


def test_build_network_forward_shape() -> None:
    torch.manual_seed(0)
    net = build_network(load(V2), num_classes=5, C=8)
    assert isinstance(net, DartsNetwork)
    assert tuple(net(torch.randn(2, 3, 32, 32)).shape) == (2, 5, 32, 32)
    assert net.output_stride == 4


def test_build_network_from_path_and_stem_stride() -> None:
    net = build_network(str(V2), num_classes=3, C=4, layers=3, stem_stride=2, in_channels=1)
    assert net.genotype == load(V2)
    assert net.output_stride == 8
    assert tuple(net(torch.randn(2, 1, 30, 26)).shape) == (2, 3, 30, 26)
    assert DartsNetwork(V2, num_classes=2, C=2, layers=3).genotype == load(V2)


def test_cell_structure() -> None:
    net = DartsNetwork(MIXED, num_classes=3, C=4, layers=5)
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    assert isinstance(net.cells[2].preprocess0, FactorizedReduce)
    assert isinstance(net.cells[1].preprocess0, ReLUConvBN)
    reduce_ops = net.cells[1].ops
    assert isinstance(reduce_ops[0], FactorizedReduce)  # skip from input 0, stride 2
    assert isinstance(reduce_ops[3], FactorizedReduce)  # skip from input 1, stride 2
    assert isinstance(reduce_ops[5], Identity)  # skip from node 0, stride 1
    # normal cell concatenates 2 nodes, reduction cell 3
    assert net.cells[0].multiplier == 2 and net.cells[1].multiplier == 3


def _relu_conv_bn(c_in: int, c_out: int) -> int:
    return c_in * c_out + 2 * c_out


def _factorized_reduce(c_in: int, c_out: int) -> int:
    return 2 * c_in * (c_out // 2) + 2 * c_out


def _op(name: str, c: int, stride: int) -> int:
    k = {"3x3": 3, "5x5": 5}.get(name[-3:], 0)
    if name.startswith("sep_conv"):
        return 2 * (k * k * c + c * c + 2 * c)
    if name.startswith("dil_conv"):
        return k * k * c + c * c + 2 * c
    if name == "skip_connect" and stride == 2:
        return _factorized_reduce(c, c)
    return 0  # pools, identity


def _cell(g: DartsGenotype, cpp: int, cp: int, c: int, reduction: bool, rprev: bool) -> int:
    pre0 = _factorized_reduce(cpp, c) if rprev else _relu_conv_bn(cpp, c)
    ops = g.reduce if reduction else g.normal
    return pre0 + _relu_conv_bn(cp, c) + sum(_op(o, c, 2 if reduction and j < 2 else 1)
                                             for o, j in ops)  # fmt: skip


def test_darts_v2_cell_parameter_count_by_hand() -> None:
    c = 8
    net = DartsNetwork(V2, num_classes=5, C=c, layers=5)
    # Normal cell 0: inputs 3C, 3C -> C; 5 sep_conv_3x3 + 1 dil_conv_3x3 + 2 identities.
    by_hand = 2 * (3 * c * c + 2 * c) + 5 * 2 * (9 * c + c * c + 2 * c) + (9 * c + c * c + 2 * c)
    assert sum(p.numel() for p in net.cells[0].parameters()) == by_hand == 2088


@pytest.mark.parametrize("genotype", [load(GENOTYPES / "darts_v1.yaml"), load(V2), MIXED])
@pytest.mark.parametrize("c", [4, 6])
def test_total_parameter_count_by_hand(genotype: DartsGenotype, c: int) -> None:
    k = 7
    net = DartsNetwork(genotype, num_classes=k, C=c, layers=5)
    mn, mr = len(genotype.normal_concat), len(genotype.reduce_concat)
    # layers=5: reductions at 1 and 3; (C_prev_prev, C_prev, C, reduction, reduction_prev)
    plan = [
        (3 * c, 3 * c, c, False, False),
        (3 * c, mn * c, 2 * c, True, False),
        (mn * c, mr * 2 * c, 2 * c, False, True),
        (mr * 2 * c, mn * 2 * c, 4 * c, True, False),
        (mn * 2 * c, mr * 4 * c, 4 * c, False, True),
    ]
    stem = 9 * 3 * 3 * c + 2 * 3 * c
    head = mn * 4 * c * k + k
    expected = stem + sum(_cell(genotype, *p) for p in plan) + head
    for cell, p in zip(net.cells, plan, strict=True):
        assert sum(q.numel() for q in cell.parameters()) == _cell(genotype, *p)
    assert sum(q.numel() for q in net.parameters()) == expected


def test_drop_path_only_in_training() -> None:
    torch.manual_seed(0)
    net = DartsNetwork(V2, num_classes=3, C=4, layers=3, drop_path_prob=0.5)
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(2)
    b = net(x)
    assert not torch.allclose(a, b)
    net.drop_path_prob = 0.0
    torch.testing.assert_close(net(x), net(x))


def test_backward_reaches_every_parameter() -> None:
    net = DartsNetwork(MIXED, num_classes=3, C=4, layers=3)
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layers": 1}, ValueError, "layers must be an integer >= 3, got 1"),
        ({"drop_path_prob": 1.0}, ValueError, r"drop_path_prob must be in \[0, 1\), got 1.0"),
        ({"num_classes": 0}, ValueError, "num_classes must be an integer >= 1, got 0"),
        ({"genotype": 3}, ValueError, "expected a DartsGenotype or its file, got int"),
    ],
)
def test_invalid_arguments(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        DartsNetwork(**{"genotype": V2, "num_classes": 3, **kwargs})
