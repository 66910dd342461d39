"""Tests of the DARTS candidate operations."""

import math

import pytest
import torch
from torch import nn

from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES
from lightning_nas.methods.darts.ops import make_op
from lightning_nas.ops import FactorizedReduce, Identity, Zero, drop_path


def test_primitives_order() -> None:
    assert DARTS_PRIMITIVES == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )


@pytest.mark.parametrize("name", DARTS_PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(16, 16), (15, 9)])
def test_op_shapes(name: str, stride: int, size: tuple[int, int]) -> None:
    h, w = size
    op = make_op(name, C=6, stride=stride, affine=False)
    out = op(torch.randn(2, 6, h, w))
    assert tuple(out.shape) == (2, 6, math.ceil(h / stride), math.ceil(w / stride))


def test_make_op_types() -> None:
    assert isinstance(make_op("skip_connect", 4, 1), Identity)
    assert isinstance(make_op("skip_connect", 4, 2), FactorizedReduce)
    assert isinstance(make_op("none", 4, 2), Zero)
    pool = make_op("avg_pool_3x3", 4, 1)
    assert isinstance(pool, nn.AvgPool2d) and pool.count_include_pad is False


def test_make_op_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown op 'sep_conv_9x9'; expected one of none, "):
        make_op("sep_conv_9x9", 4, 1)
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        make_op("sep_conv_3x3", 4, 3)


def test_zero_values_and_strided_shape() -> None:
    x = torch.randn(2, 3, 7, 8, requires_grad=True)
    out = Zero(2)(x)
    assert tuple(out.shape) == (2, 3, 4, 4)
    assert torch.count_nonzero(out) == 0
    out.sum().backward()  # stays in the graph, as in DARTS
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0
    assert tuple(Zero(1)(x).shape) == (2, 3, 7, 8)


def test_avg_pool_excludes_padding() -> None:
    out = make_op("avg_pool_3x3", 2, 1)(torch.ones(1, 2, 5, 5))
    torch.testing.assert_close(out, torch.ones(1, 2, 5, 5))


def test_factorized_reduce_matches_darts_on_even_sizes() -> None:
    torch.manual_seed(0)
    fr = FactorizedReduce(4, 6, affine=True).eval()
    x = torch.randn(2, 4, 8, 10)
    relu = torch.relu(x)
    expected = fr.bn(torch.cat([fr.conv_1(relu), fr.conv_2(relu[:, :, 1:, 1:])], dim=1))
    torch.testing.assert_close(fr(x), expected)


def test_factorized_reduce_odd_sizes_and_channels() -> None:
    fr = FactorizedReduce(4, 6)
    assert tuple(fr(torch.randn(2, 4, 7, 9)).shape) == (2, 6, 4, 5)
    with pytest.raises(ValueError, match="C_out must be even, got 5"):
        FactorizedReduce(4, 5)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("name", "stride", "expected"),
    [
        # C = 6; BN affine adds 2C per BatchNorm.
        ("sep_conv_3x3", 1, 2 * (9 * 6 + 6 * 6 + 2 * 6)),
        ("sep_conv_5x5", 2, 2 * (25 * 6 + 6 * 6 + 2 * 6)),
        ("dil_conv_3x3", 1, 9 * 6 + 6 * 6 + 2 * 6),
        ("dil_conv_5x5", 2, 25 * 6 + 6 * 6 + 2 * 6),
        ("skip_connect", 1, 0),
        ("skip_connect", 2, 2 * 6 * 3 + 2 * 6),
        ("max_pool_3x3", 2, 0),
        ("avg_pool_3x3", 1, 0),
        ("none", 2, 0),
    ],
)
def test_parameter_counts(name: str, stride: int, expected: int) -> None:
    assert count(make_op(name, 6, stride, affine=True)) == expected


def test_non_affine_ops_have_only_conv_weights() -> None:
    assert count(make_op("sep_conv_3x3", 6, 1, affine=False)) == 2 * (9 * 6 + 6 * 6)
    assert count(make_op("skip_connect", 6, 2, affine=False)) == 2 * 6 * 3


def test_drop_path() -> None:
    x = torch.ones(1000, 2, 3, 3)
    assert drop_path(x, 0.0) is x
    torch.manual_seed(0)
    out = drop_path(x, 0.25)
    per_sample = out.flatten(1)
    # Each sample is either dropped entirely or rescaled by 1 / keep.
    torch.testing.assert_close(per_sample.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert (per_sample == 0).all(1).sum() == (per_sample == 0).any(1).sum()
    assert 0.2 < (per_sample[:, 0] == 0).float().mean() < 0.3
