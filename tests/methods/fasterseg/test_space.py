"""The FasterSeg supernet: layout, width sampling, passes, losses, derivation, latency."""

from pathlib import Path

import pytest
import torch

from lightning_nas import genotypes
from lightning_nas.errors import ConfigError
from lightning_nas.methods.fasterseg.space import FasterSegOutput, FasterSegSpace

ROOT = Path(__file__).resolve().parents[3]
RELEASED = ROOT / "experiments" / "genotypes" / "fasterseg_released_arch_params.json"
PUBLISHED = ROOT / "experiments" / "genotypes" / "fasterseg_cityscapes.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _space(**kwargs) -> FasterSegSpace:
    args = {"num_classes": 3, "layers": 8, "Fch": 1, "widths": (6, 12)}
    args.update(kwargs)
    torch.manual_seed(0)
    return FasterSegSpace(**args)


def _batch(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=gen), torch.randint(
        0, 3, (n, size, size), generator=gen
    )


def test_arch_parameters_have_the_release_layout() -> None:
    space = FasterSegSpace(num_classes=19, layers=16, Fch=1)
    shapes = {k: tuple(v.shape) for k, v in space.arch_parameters().items()}
    for s in ("teacher", "student"):
        assert shapes[f"alpha_{s}_0"] == (16, 5)
        assert shapes[f"alpha_{s}_1"] == (15, 5)
        assert shapes[f"alpha_{s}_2"] == (14, 5)
        assert shapes[f"beta_{s}_1"] == (14, 2)
        assert shapes[f"beta_{s}_2"] == (13, 2)
    assert shapes["ratio_student_0"] == shapes["ratio_student_1"] == (15, 5)
    assert shapes["ratio_student_2"] == (14, 5)
    assert "ratio_teacher_0" not in shapes
    assert all(
        float(v.detach().sum()) == pytest.approx(1e-3 * v.numel())
        for v in space.arch_parameters().values()
    )
    weights = {id(p) for p in space.weight_parameters()}
    assert not weights & {id(p) for p in space.arch_parameters().values()}
    rows, cols = space.arch_labels()["alpha_student_1"]
    assert rows[0] == "layer 1" and cols[0] == "skip" and len(rows) == 15


def test_released_tensors_derive_the_published_student_and_teacher() -> None:
    space = FasterSegSpace(num_classes=19, layers=16, Fch=1)
    space.load_released(RELEASED)
    assert space.selected_lasts() == (2, 1)
    assert space.derive() == genotypes.load(PUBLISHED)
    teacher = space.extra_genotypes()["teacher"]
    assert teacher.stem_head_width == (12, 12) and "skip" not in sum(teacher.ops, ())
    with pytest.raises(ConfigError, match="ratio_0"):
        FasterSegSpace(num_classes=19, layers=16, Fch=1, widths=(6, 12)).load_released(RELEASED)
    with pytest.raises(ConfigError, match="not found"):
        space.load_released(ROOT / "missing.json")


def test_weight_and_arch_phases_run_the_documented_passes() -> None:
    space = _space()
    x, mask = _batch()
    space.train()
    out = space(x)
    assert isinstance(out, FasterSegOutput)
    assert [name for name, _ in out.passes] == [
        "teacher",
        "student/sampled",
        "student/max",
        "student/min",
    ]
    assert all(set(p) == {"8", "16", "32", "32+8", "32+16"} for _, p in out.passes)
    assert out.student.shape == (2, 3, 4, 4)  # 1/8 resolution
    loss = space.search_loss(out, mask, 255)
    assert loss.item() == pytest.approx(
        sum(
            torch.nn.functional.cross_entropy(
                p,
                torch.nn.functional.interpolate(mask[:, None].float(), size=(4, 4), mode="nearest")[
                    :, 0
                ].long(),
            ).item()
            for _, preds in out.passes
            for p in preds.values()
        ),
        rel=1e-5,
    )
    space.set_phase("arch")
    out = space(x)
    assert len(out.passes) == 4  # the release's Architect evaluates the same loss
    space.arch_sandwich = False
    out = space(x)
    assert [name for name, _ in out.passes] == ["teacher", "student/sampled"]
    space.search_loss(out, mask, 255).backward()
    grads = {k: v.grad for k, v in space.arch_parameters().items()}
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads.values()), [
        k for k, g in grads.items() if g is None or float(g.abs().sum()) == 0
    ]
    with pytest.raises(ValueError, match="phase"):
        space.set_phase("test")


def test_no_teacher_and_no_sandwich() -> None:
    space = _space(teacher=False, sandwich=False)
    assert not any("teacher" in k for k in space.arch_parameters())
    space.train()
    out = space(_batch()[0])
    assert [name for name, _ in out.passes] == ["student/sampled"] and out.teacher is None
    assert space.extra_genotypes() == {}
    with pytest.raises(ConfigError, match="teacher"):
        space.teacher_logits(_batch()[0])


def test_width_samples_are_seeded_counted_and_identical_across_replicas() -> None:
    a, b, c = _space(), _space(), _space(sample_seed=7)
    draws = []
    for space in (a, b, c):
        plans = [space._width_plan("student", "gumbel") for _ in range(4)]
        draws.append([plan[j][0].tolist() for plan in plans for j in range(3)])
    assert draws[0] == draws[1]  # two "ranks" with the same seed and step: same widths
    assert draws[0] != draws[2]
    assert int(a.sample_step) == 4 and "sample_step" in a.state_dict()
    # a replica resumed from a's state draws what a draws next
    resumed = _space()
    resumed.load_state_dict(a.state_dict())
    assert (
        resumed._width_plan("student", "gumbel")[0][0].tolist()
        == a._width_plan("student", "gumbel")[0][0].tolist()
    )
    # straight-through: hard widths, gradient to γ through the soft scores
    index, scores = _space()._width_plan("student", "gumbel")[0]
    assert torch.allclose(scores, torch.ones_like(scores)) and scores.requires_grad


def test_sampled_width_slices_the_super_kernel() -> None:
    space = _space()
    space.train()
    x = _batch()[0]
    seen = {}

    def hook(module, args, output):
        seen.setdefault(module, []).append(output.shape[1])

    op = space.cells["2_0"]["keep"].ops[1]  # 'conv' of the 1/8 cell of layer 2
    handle = op.register_forward_hook(hook)
    space.set_phase("weight")
    space(x)
    handle.remove()
    channels = seen[op]
    # teacher (full 8), sampled, max (8), min (round(8·6/12) = 4)
    assert channels[0] == 8 and channels[2] == 8 and channels[3] == 4 and channels[1] in (4, 8)


def test_eval_forward_is_deterministic_logits_at_input_size() -> None:
    space = _space()
    space.eval()
    x = _batch(size=36)[0]
    with torch.no_grad():
        y1, y2 = space(x), space(x)
    assert y1.shape == (2, 3, 36, 36) and torch.equal(y1, y2)
    assert int(space.sample_step) == 0  # eval draws nothing


def test_teacher_logits_reuse_the_step_forward() -> None:
    space = _space()
    space.train()
    x = _batch()[0]
    out = space(x)
    assert space.teacher_logits(x) is out.teacher and not out.teacher.requires_grad
    other = space.teacher_logits(x.clone())
    assert other.shape == out.teacher.shape


def test_selected_lasts_from_recorded_scores() -> None:
    space = _space()
    assert space.selected_lasts() == (2, 1)
    space.record_branch_scores({(2, 0): 0.5, (2, 1): 0.5}, {(2, 0): 5.0, (2, 1): 9.0})
    assert space.selected_lasts() == (2, 0)
    assert space.derive().paths[1][-1] == 0
    assert _space(lasts=(2, 0)).selected_lasts() == (2, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": 7}, "layers"),
        ({"widths": (4, 13)}, "widths"),
        ({"widths": (4, 4)}, "widths"),
        ({"lasts": (1, 0)}, "lasts"),
        ({"student_stem_head_width": (8, 0)}, "student_stem_head_width"),
        ({"gumbel_tau": 0.0}, "gumbel_tau"),
        ({"latency_recursion": "paper"}, "latency_recursion"),
        ({"latency_scale_weights": (1.0, -1.0, 1.0)}, "latency_scale_weights"),
    ],
)
def test_bad_arguments_name_the_key(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        _space(**kwargs)


# ----------------------------------------------------------------------------- latency
def _fake_table(space: FasterSegSpace, size=(32, 48)):
    from lightning_nas.latency import LatencyTable

    gen = torch.Generator().manual_seed(5)
    configs = space.latency_configs(size)
    entries = {c.key: float(torch.rand((), generator=gen)) + 0.01 for c in configs}
    return LatencyTable(entries, "cpu", "fake", "float32", size)


def _one_hot(space: FasterSegSpace, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in space.arch_parameters().values():
            hot = torch.randint(p.shape[1], (p.shape[0],), generator=gen)
            p.copy_(torch.nn.functional.one_hot(hot, p.shape[1]) * 200.0 - 100.0)


def _path_sum(space: FasterSegSpace, table, size, last: int) -> float:
    """Table sum of the one-hot student's ops along the path ending at scale ``last``."""
    from lightning_nas.latency import OpConfig
    from lightning_nas.methods.fasterseg.ops import FASTERSEG_PRIMITIVES

    sizes = space._sizes(size)
    top = space.layers - 1

    def arg(name, row):
        return int(getattr(space, name)[row].argmax())

    def channels(li, j):
        if li == -1:
            return space._channels(0, space.stem_head["student"][0])
        if li == top:
            return space._channels(j, space.stem_head["student"][1])
        return space._channels(j, space.widths[arg(f"ratio_student_{j}", li - 1 if j == 2 else li)])

    total, li, j, target = 0.0, top, last, "keep"
    while li >= 0:
        op = FASTERSEG_PRIMITIVES[arg(f"alpha_student_{j}", li - j)]
        out_j = j if target == "keep" else j + 1
        stride = 1 if target == "keep" else 2
        total += table[
            OpConfig(f"fs_{op}", channels(li - 1, j), channels(li, out_j), *sizes[j], stride=stride)
        ]
        # where did this cell's input come from?
        if li == 0:
            break
        if j == 0 or (li > j and arg(f"beta_student_{j}", li - j - 1) == 1):
            li, target = li - 1, "keep"
        else:
            li, j, target = li - 1, j - 1, "down"
    return total


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (3 / 12, 4 / 12, 5 / 12)])
def test_expected_latency_of_a_one_hot_student_is_the_table_sum(weights) -> None:
    """``latency_recursion: exact``: the weighted table sums along the three one-hot paths."""
    space = _space(widths=(4, 8, 12), latency_recursion="exact", latency_scale_weights=weights)
    size = (32, 48)
    table = _fake_table(space, size)
    for seed in range(3):
        _one_hot(space, seed)
        expected = float(space.expected_latency(table).detach())
        stem = table[space._stem_config(size)]
        paths = [_path_sum(space, table, size, last) for last in range(3)]
        assert expected == pytest.approx(
            sum(w * (stem + p) for w, p in zip(weights, paths)), rel=1e-5
        )
        assert set(space.latency_components(table)) == {"operators", "strides", "expansion"}


@pytest.mark.parametrize("recursion", ["release", "exact"])
def test_latency_components_differentiate_their_own_decision_only(recursion) -> None:
    space = _space(widths=(4, 8, 12), latency_recursion=recursion)
    table = _fake_table(space)
    owners = {"operators": "alpha_student", "strides": "beta_student", "expansion": "ratio_student"}
    # the release's recursion leaves β of the 1/16 scale without a latency gradient
    blind = {"beta_student_1"} if recursion == "release" else set()
    for name, value in space.latency_components(table).items():
        space.zero_grad()
        value.backward()
        for key, p in space.arch_parameters().items():
            moved = p.grad is not None and float(p.grad.abs().sum()) > 0
            assert moved == (key.startswith(owners[name]) and key not in blind), (name, key)
    space.zero_grad()
    space.expected_latency(table).backward()
    for key, p in space.arch_parameters().items():
        if "student" in key:
            moved = p.grad is not None and float(p.grad.abs().sum()) > 0
            assert moved == (key not in blind), key


def test_table_covers_every_derivable_student() -> None:
    from lightning_nas.methods.fasterseg.network import fasterseg_latency_configs

    space = _space(widths=(4, 8, 12))
    size = (32, 48)
    table = _fake_table(space, size)
    gen = torch.Generator().manual_seed(0)
    for lasts in ((2, 1), (2, 0)):
        space.lasts = lasts
        for _ in range(5):
            with torch.no_grad():
                for p in space.arch_parameters().values():
                    p.copy_(3 * torch.randn(p.shape, generator=gen))
            g = space.derive()
            configs = fasterseg_latency_configs(g, space.num_classes, size, space.Fch)
            table.require(configs)  # raises on a missing entry
            assert space.derived_latency(table) == pytest.approx(table.total(configs))


def test_ohem_search_loss_sums_ohem_over_passes_and_heads() -> None:
    from lightning_nas.losses import OhemCrossEntropy

    space = _space(ohem_thresh=0.7)
    space.train()
    x, mask = _batch()
    out = space(x)
    target = torch.nn.functional.interpolate(mask[:, None].float(), size=(4, 4), mode="nearest")
    ohem = OhemCrossEntropy(0.7, 1 / 16)
    expected = sum(float(ohem(p, target[:, 0].long())) for _, ps in out.passes for p in ps.values())
    assert float(space.search_loss(out, mask, 255).detach()) == pytest.approx(expected, rel=1e-5)
    plain = sum(
        float(torch.nn.functional.cross_entropy(p, target[:, 0].long()))
        for _, ps in out.passes
        for p in ps.values()
    )
    assert expected != pytest.approx(plain)
    with pytest.raises(ConfigError, match="ohem_thresh"):
        _space(ohem_thresh=1.5)


def test_the_step_keeps_no_graph_and_the_teacher_is_the_widest() -> None:
    import copy

    space = _space(widths=(4, 8))
    space.train()
    x = _batch()[0]
    space(x)
    clone = copy.deepcopy(space)  # an EMA / SWA callback may copy the module mid-fit
    assert clone.teacher_logits(x).shape == (2, 3, 4, 4)
    teacher = space.extra_genotypes()["teacher"]
    assert {w for ws in teacher.widths for w in ws} == {8}  # max(widths), as the teacher ran


def test_beta_mixes_the_outputs_of_the_cell_on_both_inputs() -> None:
    """Cell (2, 1) has two inputs: its output is β0 · cell(down) + β1 · cell(keep)."""
    space = _space(teacher=False)
    space.eval()
    with torch.no_grad():
        space.beta_student_1[0] = torch.tensor([0.0, 1.0])  # layer 2's 1/16 cell
    seen = []
    op = space.cells["2_1"]["keep"]
    handle = op.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    captured = {}
    orig = space._lattice

    def spy(start, betas, cell):
        captured["b"] = betas[1][0].clone()
        return orig(start, betas, cell)

    space._lattice = spy
    with torch.no_grad():
        space(_batch()[0])
    handle.remove()
    assert len(seen) == 2  # once per input
    b = captured["b"]
    # the two runs differ (different inputs); β weights their outputs
    (_, out_down), (_, out_keep) = seen
    assert not torch.allclose(out_down, out_keep)
    assert torch.allclose(b.sum(), torch.tensor(1.0))


def test_batchnorm_private_per_width_and_shared_affine_checkpoints_load() -> None:
    """Default: a private BN per width (the release's USBatchNorm2d); the old layout loads."""
    from lightning_nas.methods.fasterseg.ops import SlimBatchNorm2d

    private = _space(widths=(4, 8, 12))
    bns = [m for m in private.modules() if isinstance(m, SlimBatchNorm2d)]
    assert bns and not any(m.shared_affine for m in bns)
    for m in bns:
        assert [tuple(b.weight.shape) for b in m.bn] == [(c,) for c in m.channel_choices]
    shared = _space(widths=(4, 8, 12), shared_bn_affine=True)
    assert all(m.shared_affine for m in shared.modules() if isinstance(m, SlimBatchNorm2d))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, t in shared.state_dict().items():
            if name.rsplit(".", 1)[-1].startswith(("weight", "bias", "running_mean")):
                t.copy_(torch.randn(t.shape, generator=gen))
            elif "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
    private.load_state_dict(shared.state_dict())  # strict: converted per width
    x = _batch()[0]
    with torch.no_grad():
        torch.testing.assert_close(private.eval()(x), shared.eval()(x))
