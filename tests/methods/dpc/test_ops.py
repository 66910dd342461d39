"""DPC's operations against the release's formulas and hand-computed values."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.methods.dpc.genotype import GRIDS
from lightning_nas.methods.dpc.ops import (
    BN_EPS,
    BN_MOMENTUM,
    Conv1x1BNReLU,
    PyramidPooling,
    SeparableAtrousConv,
    make_dpc_op,
    pool_kernel,
)
from lightning_nas.ops import ConvNorm


def scale_dimension(dim: int, scale: float) -> int:
    """The release's ``utils.scale_dimension`` (research/deeplab/core/utils.py @ 0f5c934)."""
    return int((float(dim) - 1.0) * scale + 1.0)


def release_kernel(crop: int, output_stride: int, grid: int) -> int:
    """The release's ``_get_pyramid_pooling_arguments``: the pooled kernel from the crop size."""
    return scale_dimension(crop, 1.0 / (output_stride * grid))


def test_bn_settings_are_the_releases() -> None:
    assert BN_MOMENTUM == pytest.approx(1 - 0.9997)  # TF decay 0.9997
    assert BN_EPS == 1e-5


# ----------------------------------------------------------------- pyramid pooling
def test_pool_kernel_for_crop_769_at_os_16() -> None:
    """Notes §3.3: feature 49; kernels 49 / 25 / 13 / 7; pooled maps 1 / 25 / 37 / 43."""
    feature = scale_dimension(769, 1 / 16)
    assert feature == 49
    kernels = [pool_kernel((feature, feature), (g, g)) for g in GRIDS]
    assert kernels == [(49, 49), (25, 25), (13, 13), (7, 7)]
    assert [k for k, _ in kernels] == [release_kernel(769, 16, g) for g in GRIDS]

    pooled_sizes = []
    for g in GRIDS:
        op = PyramidPooling(1, 1, (g, g)).eval()
        op.conv.register_forward_hook(lambda m, inp, out: pooled_sizes.append(inp[0].shape[-1]))
        with torch.no_grad():
            assert tuple(op(torch.randn(1, 1, 49, 49)).shape) == (1, 1, 49, 49)
    assert pooled_sizes == [1, 25, 37, 43]


def test_pool_kernel_matches_the_release_unit_tests() -> None:
    """``dense_prediction_cell_test.py``: 513 at OS 16 → feature 33, kernel 9 (4×4), 17 (2×2)."""
    assert scale_dimension(513, 1 / 16) == 33
    assert pool_kernel((33, 33), (4, 4)) == (9, 9)
    assert pool_kernel((33, 33), (2, 2)) == (17, 17)
    assert scale_dimension(257, 1 / 16) == 17
    assert pool_kernel((17, 17), (1, 1)) == (17, 17)


def test_pool_kernel_from_the_feature_equals_the_release_from_the_crop() -> None:
    """For every crop size (not only 16·k + 1), OS 8 and 16, and every grid."""
    for crop, output_stride, g in itertools.product(range(17, 1100), (8, 16), GRIDS):
        feature = scale_dimension(crop, 1 / output_stride)
        assert pool_kernel((feature, 5), (g, 1))[0] == release_kernel(crop, output_stride, g), (
            crop,
            output_stride,
            g,
        )


def _identity_pooling(channels: int, grid: tuple[int, int]) -> PyramidPooling:
    """Pooling whose 1×1 conv is the identity and whose BN (eval, unit statistics) only scales."""
    op = PyramidPooling(channels, channels, grid).double().eval()
    with torch.no_grad():
        op.conv.weight.copy_(torch.eye(channels, dtype=torch.float64)[:, :, None, None])
    return op


def _resize_align_corners(m: list[list[float]], out_h: int, out_w: int) -> list[list[float]]:
    """Bilinear resize with corner pixels aligned, by hand (``src = dst·(in - 1)/(out - 1)``)."""
    in_h, in_w = len(m), len(m[0])

    def source(n_in: int, n_out: int, i: int) -> tuple[int, int, float]:
        s = 0.0 if n_in == 1 else i * (n_in - 1) / (n_out - 1)
        lo = min(int(s), n_in - 1)
        return lo, min(lo + 1, n_in - 1), s - lo

    out = []
    for i in range(out_h):
        y0, y1, dy = source(in_h, out_h, i)
        row = []
        for j in range(out_w):
            x0, x1, dx = source(in_w, out_w, j)
            top = (1 - dx) * m[y0][x0] + dx * m[y0][x1]
            bottom = (1 - dx) * m[y1][x0] + dx * m[y1][x1]
            row.append((1 - dy) * top + dy * bottom)
        out.append(row)
    return out


@pytest.mark.parametrize(("g_h", "g_w"), list(itertools.product(GRIDS, GRIDS)))
def test_pyramid_pooling_values_against_a_hand_computed_oracle(g_h: int, g_w: int) -> None:
    """A 9×7 feature (crops 129 × 97 at OS 16), every grid: window means → ReLU → resize back."""
    crop_h, crop_w, output_stride = 129, 97, 16
    f_h, f_w = scale_dimension(crop_h, 1 / 16), scale_dimension(crop_w, 1 / 16)
    assert (f_h, f_w) == (9, 7)
    k_h, k_w = (
        release_kernel(crop_h, output_stride, g_h),
        release_kernel(crop_w, output_stride, g_w),
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, f_h, f_w, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        out = _identity_pooling(2, (g_h, g_w))(x)
    assert tuple(out.shape) == (1, 2, f_h, f_w)

    bn_scale = (1 + BN_EPS) ** -0.5
    v = x[0].tolist()
    for c in range(2):
        pooled = [
            [
                max(0.0, bn_scale * sum(v[c][i + a][j + b] for a in range(k_h) for b in range(k_w))
                    / (k_h * k_w))
                for j in range(f_w - k_w + 1)
            ]
            for i in range(f_h - k_h + 1)
        ]  # fmt: skip
        expected = torch.tensor(_resize_align_corners(pooled, f_h, f_w), dtype=torch.float64)
        torch.testing.assert_close(out[0, c], expected, rtol=1e-10, atol=1e-12)


def test_pyramid_pooling_is_not_adaptive_pooling() -> None:
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = _identity_pooling(3, (2, 2))(x)
        adaptive = F.relu(F.adaptive_avg_pool2d(x, 2)) * (1 + BN_EPS) ** -0.5
        adaptive = F.interpolate(adaptive, size=(9, 9), mode="bilinear", align_corners=True)
    assert not torch.allclose(out, adaptive, atol=1e-3)


def test_pyramid_pooling_grid_1_is_image_pooling() -> None:
    x = torch.rand(2, 3, 6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = _identity_pooling(3, (1, 1))(x)
    expected = x.mean(dim=(2, 3), keepdim=True).expand_as(x) * (1 + BN_EPS) ** -0.5
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------- separable atrous conv
@pytest.mark.parametrize("rate", [(1, 1), (1, 6), (18, 15), (21, 3)])
def test_separable_atrous_conv_is_same_padded_and_dilated(rate: tuple[int, int]) -> None:
    """With a depthwise kernel that is 1 at its top-left tap, the output is the input shifted
    by the rate (zero fill), as TF's ``SAME`` atrous depthwise conv gives."""
    op = SeparableAtrousConv(2, 2, rate).double().eval()
    assert op.depthwise.groups == 2 and op.depthwise.kernel_size == (3, 3)
    assert op.depthwise.bias is None and op.pointwise.bias is None
    assert op.pointwise.kernel_size == (1, 1)
    with torch.no_grad():
        op.depthwise.weight.zero_()
        op.depthwise.weight[:, :, 0, 0] = 1.0
        op.pointwise.weight.copy_(torch.eye(2, dtype=torch.float64)[:, :, None, None])
        x = torch.rand(
            1, 2, 25, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
        )
        out = op(x)
    r_h, r_w = rate
    expected = torch.zeros_like(x)
    expected[:, :, r_h:, r_w:] = x[:, :, : 25 - r_h, : 30 - r_w]
    torch.testing.assert_close(out, expected * (1 + BN_EPS) ** -1.0)


def test_separable_atrous_conv_keeps_small_maps_and_has_relu_after_each_bn() -> None:
    op = SeparableAtrousConv(4, 8, (21, 21)).eval()
    assert tuple(op(torch.randn(2, 4, 3, 5)).shape) == (2, 8, 3, 5)
    with torch.no_grad():
        op.pointwise_bn.bias.fill_(-100.0)
        assert op(torch.randn(1, 4, 5, 5)).eq(0).all()  # final ReLU
    kinds = [type(m) for m in op.modules()][1:]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d]
    for bn in (op.depthwise_bn, op.pointwise_bn):
        assert bn.momentum == BN_MOMENTUM and bn.eps == BN_EPS


def test_initialisation_is_the_releases_truncated_normal() -> None:
    torch.manual_seed(0)
    op = SeparableAtrousConv(2048, 256, (1, 1))
    dw, pw = op.depthwise.weight, op.pointwise.weight
    assert dw.abs().max() <= 2 * 0.33 and pw.abs().max() <= 2 * 0.06
    # a normal cut at ±2σ has standard deviation 0.880·σ
    assert dw.std().item() == pytest.approx(0.880 * 0.33, rel=0.03)
    assert pw.std().item() == pytest.approx(0.880 * 0.06, rel=0.01)


# ----------------------------------------------------------------- 1×1 conv and the op factory
def test_conv1x1_is_the_shared_conv_norm_with_the_releases_bn() -> None:
    op = Conv1x1BNReLU(6, 4)
    assert isinstance(op, ConvNorm)
    assert op.conv.kernel_size == (1, 1) and op.conv.bias is None
    assert op.bn.momentum == BN_MOMENTUM and op.bn.eps == BN_EPS
    assert tuple(op(torch.randn(2, 6, 5, 3)).shape) == (2, 4, 5, 3)


def test_make_dpc_op_scales_rates_but_not_grids() -> None:
    sep = make_dpc_op("sep_conv3x3", (1, 6), 4, 8, rate_multiplier=2)
    assert isinstance(sep, SeparableAtrousConv)
    assert sep.depthwise.dilation == (2, 12) and sep.depthwise.padding == (2, 12)
    pool = make_dpc_op("pyramid_pooling", (2, 4), 4, 8, rate_multiplier=2)
    assert isinstance(pool, PyramidPooling) and pool.grid == (2, 4)
    assert isinstance(make_dpc_op("conv1x1", (1, 1), 4, 8), Conv1x1BNReLU)
    with pytest.raises(ValueError, match="unknown op 'conv5x5'"):
        make_dpc_op("conv5x5", (1, 1), 4, 8)
