"""FasterSeg's expected latency against an independent port of the release's ``forward_latency``.

The oracle below re-writes, for this test only, the accumulation of the release's
``Network_Multi_Path.forward_latency`` (``search/model_search.py`` at HEAD 478b026, lines
~380-475): its per-cell loop (a two-input cell's latency is ``Σ β·cell``), then its loop
``for ii, lat in enumerate(latency)`` verbatim — ``betas[j][i-j-1]`` with ``j`` the leftover
variable of the per-cell loop, the down total computed from the already updated keep total, the
down input taken after this layer's update — and the unweighted ``sum([latency0, latency1,
latency2])``. Its per-cell latency is computed here from a closed-form toy op latency (not from
the space's tables), with the widths as the space models them (the expectation over softmax(γ);
the release samples them) and the release's width-row indexing (its ``ratio`` tuples).
"""

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.latency import LatencyTable
from lightning_nas.methods.fasterseg.ops import FASTERSEG_PRIMITIVES, num_filters
from lightning_nas.methods.fasterseg.space import FasterSegSpace

SIZE = (32, 48)  # 1/8: 4×6, 1/16: 2×3, 1/32: 1×2
SCALE_SIZES = [(4, 6), (2, 3), (1, 2)]
STEM_MS, OTHER_MS = 1.5, 0.7
MODES = {  # decision modes (α, β, γ) of expected_latency and of each decoupled component
    "expected": ("soft", "soft", "soft"),
    "operators": ("soft", "uniform", "max"),
    "strides": ("uniform", "soft", "max"),
    "expansion": ("uniform", "uniform", "soft"),
}


def _toy_ms(op: int, c_in: int, c_out: int, h: int, w: int, stride: int) -> float:
    """A closed-form op latency: op-, width- (not separable), size- and stride-dependent."""
    return (
        (op + 1) * (0.05 + 0.002 * c_in * c_out) + 0.01 * h * w + 0.3 * (stride - 1) + 1e-3 * c_in
    )


def _space(**kwargs) -> tuple[FasterSegSpace, LatencyTable]:
    args = {"num_classes": 3, "layers": 8, "Fch": 2, "widths": (4, 8, 12), "teacher": False}
    args.update(kwargs)
    space = FasterSegSpace(**args).double()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in space.arch_parameters().values():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    entries = {}
    for c in space.latency_configs(SIZE):
        name = c.op.removeprefix("fs_")
        if name in FASTERSEG_PRIMITIVES:
            op = FASTERSEG_PRIMITIVES.index(name)
            entries[c.key] = _toy_ms(op, c.C_in, c.C_out, c.H, c.W, c.stride)
        else:  # the stem; head pieces are not part of the expected latency
            entries[c.key] = STEM_MS if name == "stem" else OTHER_MS
    return space, LatencyTable(entries, "cpu", "toy", "float64", SIZE)


def _release_forward_latency(space: FasterSegSpace, modes: tuple[str, str, str]) -> torch.Tensor:
    """The release's forward_latency (student, width expectation instead of Gumbel samples)."""
    alpha_mode, beta_mode, ratio_mode = modes
    layers, widths = space.layers, space.widths
    stem_width, head_width = space.stem_head["student"]

    def arch(name: str, mode: str) -> torch.Tensor:
        p = getattr(space, name)
        if mode == "soft":
            return F.softmax(p, dim=-1)
        if mode == "uniform":
            return torch.ones_like(p) / p.shape[1]
        return F.one_hot(torch.full((p.shape[0],), p.shape[1] - 1), p.shape[1]).to(p)  # max

    alphas = [arch(f"alpha_student_{j}", alpha_mode) for j in range(3)]
    betas = [None, arch("beta_student_1", beta_mode), arch("beta_student_2", beta_mode)]
    ratios = [arch(f"ratio_student_{j}", ratio_mode) for j in range(3)]

    def width_law(r, scale: int) -> list:
        """(channels, probability) pairs; an int ``r`` forces a width in twelfths."""
        ch = [num_filters((8, 16, 32)[scale], space.Fch, w / 12) for w in widths]
        if isinstance(r, int):
            return [(num_filters((8, 16, 32)[scale], space.Fch, r / 12), 1.0)]
        return list(zip(ch, r))

    def mixed(scale: int, out_scale: int, stride: int, alpha, r_in, r_out):
        h, w = SCALE_SIZES[scale]
        return sum(
            alpha[o] * p_in * p_out * _toy_ms(o, c_in, c_out, h, w, stride)
            for o in range(len(FASTERSEG_PRIMITIVES))
            for c_in, p_in in width_law(r_in, scale)
            for c_out, p_out in width_law(r_out, out_scale)
        )

    def cell_forward_latency(scale: int, alpha, ratio):
        out = mixed(scale, scale, 1, alpha, ratio[0], ratio[1])
        down = None if ratio[2] is None else mixed(scale, scale + 1, 2, alpha, ratio[0], ratio[2])
        return out, down

    latency_total = [[STEM_MS, 0], [0, 0], [0, 0]]  # (out, down)
    for i in range(layers):
        latency = []
        for j in range(min(i, 2) + 1):  # the release's cells of layer i; j leaks, as there
            alpha = alphas[j][i - j]
            if i == 0 and j == 0:
                ratio = (stem_width, ratios[j][i - j], ratios[j + 1][i - j])
            elif i == layers - 1:
                if j == 0:
                    ratio = (ratios[j][i - j - 1], head_width, None)
                else:
                    ratio = (ratios[j][i - j], head_width, None)
            elif j == 2:
                ratio = (ratios[j][i - j], ratios[j][i - j + 1], None)
            elif j == 0:
                ratio = (ratios[j][i - j - 1], ratios[j][i - j], ratios[j + 1][i - j])
            else:
                ratio = (ratios[j][i - j], ratios[j][i - j + 1], ratios[j + 1][i - j])
            if j == 0:
                out1, down1 = cell_forward_latency(j, alpha, ratio)
                latency.append([out1, down1])
            elif i == j:
                out0, down0 = cell_forward_latency(j, alpha, ratio)
                latency.append([out0, down0])
            else:
                out0, down0 = cell_forward_latency(j, alpha, ratio)  # from down
                out1, down1 = cell_forward_latency(j, alpha, ratio)  # from keep
                b = betas[j][i - j - 1]
                latency.append(
                    [
                        sum(w * out for w, out in zip(b, [out0, out1])),
                        sum(w * d if d is not None else 0 for w, d in zip(b, [down0, down1])),
                    ]
                )
        for ii, lat in enumerate(latency):  # verbatim logic of the release's loop
            if ii == 0:
                if lat[0] is not None:
                    latency_total[ii][0] = latency_total[ii][0] + lat[0]
                if lat[1] is not None:
                    latency_total[ii][1] = latency_total[ii][0] + lat[1]
            elif i == ii:
                if lat[0] is not None:
                    latency_total[ii][0] = latency_total[ii - 1][1] + lat[0]
                if lat[1] is not None:
                    latency_total[ii][1] = latency_total[ii - 1][1] + lat[1]
            else:
                b = betas[j][i - j - 1]
                if lat[0] is not None:
                    latency_total[ii][0] = (
                        b[1] * latency_total[ii][0] + b[0] * latency_total[ii - 1][1] + lat[0]
                    )
                if lat[1] is not None:
                    latency_total[ii][1] = (
                        b[1] * latency_total[ii][0] + b[0] * latency_total[ii - 1][1] + lat[1]
                    )
    return sum([latency_total[0][0], latency_total[1][0], latency_total[2][0]])


def _ours(space: FasterSegSpace, table: LatencyTable, which: str) -> torch.Tensor:
    if which == "expected":
        return space.expected_latency(table)
    return space.latency_components(table)[which]


def _grads(value: torch.Tensor, space: FasterSegSpace) -> dict[str, torch.Tensor]:
    params = space.arch_parameters()
    grads = torch.autograd.grad(
        value, list(params.values()), allow_unused=True, materialize_grads=True
    )
    return dict(zip(params, grads))


def test_defaults_are_the_release_unweighted_sum_and_recursion() -> None:
    space = FasterSegSpace(num_classes=3, layers=8, Fch=1, widths=(6, 12))
    assert space.latency_recursion == "release"
    assert space.latency_scale_weights == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("layers", [8, 9])
@pytest.mark.parametrize("which", list(MODES))
def test_release_recursion_equals_the_release_value_and_gradients(which: str, layers: int) -> None:
    space, table = _space(layers=layers)
    ours = _ours(space, table, which)
    oracle = _release_forward_latency(space, MODES[which])
    assert float(ours.detach()) == pytest.approx(float(oracle.detach()), rel=1e-12)
    g_ours, g_oracle = _grads(ours, space), _grads(oracle, space)
    for name in g_ours:
        torch.testing.assert_close(g_ours[name], g_oracle[name], rtol=1e-9, atol=1e-12)
    if MODES[which][1] == "soft":  # β is a decision of this term
        # the 1/16 β: no latency gradient in the release (β0·op + β1·op = op), none here
        assert float(g_oracle["beta_student_1"].abs().max()) < 1e-12
        assert torch.equal(g_ours["beta_student_1"], torch.zeros_like(g_ours["beta_student_1"]))
        assert float(g_ours["beta_student_2"].abs().max()) > 1e-3


def test_exact_recursion_differs_and_regularises_the_1_16_beta() -> None:
    space, table = _space(latency_recursion="exact")
    strides = space.latency_components(table)["strides"]
    release = _release_forward_latency(space, MODES["strides"])
    assert float(strides) != pytest.approx(float(release), rel=1e-6)
    grads = _grads(strides, space)
    assert float(grads["beta_student_1"].abs().max()) > 1e-3
    assert float(grads["beta_student_2"].abs().max()) > 1e-3


def test_scale_weights_weight_the_three_paths() -> None:
    weights = (3 / 12, 4 / 12, 5 / 12)
    space, table = _space()
    unweighted = float(space.expected_latency(table))
    space.latency_scale_weights = weights
    weighted = float(space.expected_latency(table))
    per_path = []  # each path's total: weights (1, 0, 0), (0, 1, 0), (0, 0, 1)
    for k in range(3):
        space.latency_scale_weights = tuple(float(k == m) for m in range(3))
        per_path.append(float(space.expected_latency(table)))
    assert unweighted == pytest.approx(sum(per_path), rel=1e-12)
    assert weighted == pytest.approx(sum(w * p for w, p in zip(weights, per_path)), rel=1e-12)
