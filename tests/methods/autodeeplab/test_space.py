"""Tests of the Auto-DeepLab search space (lattice supernet, α/β, decoding, memory savers)."""

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import AutoDeepLabGenotype, load, save
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES
from lightning_nas.methods.autodeeplab.ops import make_autodeeplab_op
from lightning_nas.methods.autodeeplab.space import _conv, _StateEdges, derive_cell
from lightning_nas.methods.autodeeplab.viterbi import brute_force_path
from lightning_nas.methods.darts.ops import make_op
from lightning_nas.spaces import AutoDeepLabSpace
from lightning_nas.spaces.base import SearchSpace

GENOTYPES = Path(__file__).resolve().parents[3] / "experiments" / "genotypes"
OPS = {name: k for k, name in enumerate(AUTODEEPLAB_PRIMITIVES)}


def tiny(**kw) -> AutoDeepLabSpace:
    torch.manual_seed(kw.pop("seed", 0))
    kw.setdefault("num_classes", 5)
    kw.setdefault("layers", 3)
    kw.setdefault("filter_multiplier", 2)
    return AutoDeepLabSpace(**kw)


def loss_of(space: nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = space(x)
    target = torch.randint(0, logits.shape[1], (x.shape[0], *x.shape[-2:]),
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    return F.cross_entropy(logits, target)


@pytest.fixture(scope="module")
def space() -> AutoDeepLabSpace:
    return tiny()


def test_forward_shape(space):
    assert isinstance(space, SearchSpace)
    assert tuple(space(torch.randn(2, 3, 32, 32)).shape) == (2, 5, 32, 32)
    odd = tiny(layers=2, strides=(4, 8), in_channels=1, num_classes=3)
    assert tuple(odd(torch.randn(2, 1, 33, 27)).shape) == (2, 3, 33, 27)
    five = tiny(layers=4, strides=(4, 8, 16, 32, 64), filter_multiplier=1, blocks=2)
    assert tuple(five(torch.randn(2, 3, 64, 64)).shape) == (2, 5, 64, 64)
    assert five.alphas.shape == (2 + 3, 8) and five.betas.shape == (4, 5, 3)


def test_lattice_structure():
    space = tiny(layers=4, strides=(4, 8, 16, 32))
    # nodes reachable from the stem (stride 4): level <= layer + 1
    assert space.levels_at == [[0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3]]
    assert sorted(space.nodes) == sorted(
        f"{layer}_{i}" for layer in range(4) for i in space.levels_at[layer]
    )
    sources = {k: node.source_levels for k, node in space.nodes.items()}
    assert sources["0_0"] == [0] and sources["0_1"] == [0]  # from the stem
    assert sources["1_2"] == [1] and sources["1_0"] == [0, 1]
    assert sources["2_1"] == [0, 1, 2] and sources["3_3"] == [2, 3]
    # ^sH^{l-2} exists for layer 1 level 0 (the stem) and from layer 2 on where reachable
    has_pp = {k for k, node in space.nodes.items() if node.preprocess_pp is not None}
    assert has_pp == {"1_0", "2_0", "2_1", "3_0", "3_1", "3_2"}
    # a node at stride s has B·F·s/4 channels: the ASPP heads of the last layer
    assert {i: head.conv1.in_channels for i, head in space.aspp.items()} == {
        "0": 10, "1": 20, "2": 40, "3": 80
    }  # fmt: skip
    assert {i: head.rate for i, head in space.aspp.items()} == {"0": 24, "1": 12, "2": 6, "3": 3}


def test_arch_parameters_and_gradients():
    space = tiny(layers=3)
    arch = space.arch_parameters()
    assert list(arch) == ["alphas", "betas"]
    assert arch["alphas"] is space.alphas and arch["betas"] is space.betas
    assert space.alphas.shape == (20, 8) and space.betas.shape == (3, 4, 3)
    assert 0 < space.alphas.abs().max() < 1e-2 and 0 < space.betas.abs().max() < 1e-2
    weight_ids = {id(p) for p in space.weight_parameters()}
    arch_ids = {id(p) for p in arch.values()}
    assert weight_ids.isdisjoint(arch_ids)
    assert weight_ids | arch_ids == {id(p) for p in space.parameters()}

    loss_of(space, torch.randn(2, 3, 32, 32)).backward()
    assert space.alphas.grad is not None and (space.alphas.grad.abs().sum(-1) > 0).all()
    g = space.betas.grad
    assert g is not None
    # every used transition gets a gradient: stem row, and rows of nodes of layers 0 and 1
    assert g[0, 0, 1:].abs().min() > 0 and g[0, 0, 0] == 0  # stem: same / to stride 8
    assert g[1, :2].abs().sum() > 0 and g[2, :3].abs().sum() > 0
    assert g[0, 1:].abs().sum() == 0  # unused rows (no node at layer -1 beyond the stem)
    assert all(p.grad is not None for p in space.weight_parameters())


def test_beta_normalised_over_outgoing_transitions(space):
    probs = space.transition_probabilities()
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4))
    nonzero = (probs > 0).sum(-1)
    assert (nonzero[:, 0] == 2).all() and (nonzero[:, -1] == 2).all()  # boundary levels
    assert (nonzero[:, 1:-1] == 3).all()
    assert (probs[:, 0, 0] == 0).all() and (probs[:, -1, 2] == 0).all()
    # a hand-set row: softmax over the existing transitions only (no 2/3 rescale)
    with torch.no_grad():
        b = space.betas.clone()
        space.betas.zero_()
        space.betas[1, 0] = torch.tensor([50.0, 0.0, math.log(3.0)])
        probs = space.transition_probabilities()
        space.betas.copy_(b)
    torch.testing.assert_close(probs[1, 0], torch.tensor([0.0, 0.25, 0.75]))
    torch.testing.assert_close(probs[1, 1], torch.full((3,), 1 / 3))

    dists = space.arch_distributions()
    labels = space.arch_labels()
    torch.testing.assert_close(dists["alphas"].sum(-1), torch.ones(20))
    rows, cols = labels["betas"]
    # the stem, then the nodes of layers 0 and 1 (layer 2 is the last: no outgoing transitions)
    assert rows == ["stem", "l0_s4", "l0_s8", "l1_s4", "l1_s8", "l1_s16"]
    assert cols == ["to_finer", "to_same", "to_coarser"]
    assert dists["betas"].shape == (6, 3)
    torch.testing.assert_close(dists["betas"].sum(-1), torch.ones(6))
    assert dists["betas"][0, 0] == 0  # the stem cannot go finer
    assert labels["alphas"][0][:3] == ["b0_in0", "b0_in1", "b1_in0"]
    assert labels["alphas"][1] == list(AUTODEEPLAB_PRIMITIVES)


def _alphas_for(cell) -> torch.Tensor:
    """α that is large on each chosen (op, input); the first pair of a block the stronger."""
    a = torch.zeros(20, 8)
    for b in range(5):
        for rank, (op, j) in enumerate(cell[2 * b : 2 * b + 2]):
            a[b * (b + 3) // 2 + j, OPS[op]] = 10.0 - 2.0 * rank
    return a


def _betas_for(path, levels=4) -> torch.Tensor:
    betas = torch.zeros(len(path), levels, 3)
    previous = 0
    for layer, level in enumerate(path):
        betas[layer, previous, level - previous + 1] = 20.0
        previous = level
    return betas


def test_derive_reproduces_the_published_architecture():
    published = load(GENOTYPES / "autodeeplab_cityscapes.yaml")
    space = tiny(layers=12)
    with torch.no_grad():
        space.alphas.copy_(_alphas_for(published.cell))
        space.betas.copy_(_betas_for(published.path))
    assert space.derive() == published
    stats = space.derived_statistics()
    assert stats["skip_connections"] == 0.0
    assert stats["path_final_stride"] == 8.0
    assert stats["path_log_probability"] == pytest.approx(0.0, abs=1e-6)


def test_derive_hand_built():
    space = tiny(layers=3, strides=(4, 8, 16))
    a = torch.zeros(20, 8)
    a[0, OPS["sep_conv_5x5"]] = 2.0  # block 0: input 0 and 1
    a[1, OPS["skip_connect"]] = 1.0
    a[2, OPS["none"]] = 9.0  # block 1: input 0 has only `none` -> inputs 2 (block 0) and 1
    a[3, OPS["atrous_conv_3x3"]] = 1.0
    a[4, OPS["max_pool_3x3"]] = 3.0
    a[5:, OPS["avg_pool_3x3"]] = 0.5  # blocks 2-4: ties -> inputs 0, 1 with avg_pool
    a[5 + 3, OPS["atrous_conv_5x5"]] = 1.0  # block 2, input 3 (= block 1)
    b = torch.zeros(3, 3, 3)
    b[0, 0] = torch.tensor([0.0, 0.0, math.log(4.0)])  # stem -> stride 8 with p = 0.8
    b[1, 1] = torch.tensor([math.log(2.0), 0.0, 0.0])  # stride 8 -> stride 4 with p = 0.5
    b[2, 0] = torch.tensor([0.0, 0.0, math.log(3.0)])  # stride 4 -> stride 8 with p = 0.75
    with torch.no_grad():
        space.alphas.copy_(a)
        space.betas.copy_(b)
    g = space.derive()
    assert g == AutoDeepLabGenotype(
        cell=(
            ("sep_conv_5x5", 0), ("skip_connect", 1),
            ("max_pool_3x3", 2), ("atrous_conv_3x3", 1),
            ("atrous_conv_5x5", 3), ("avg_pool_3x3", 0),
            ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
            ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
        ),
        path=(1, 0, 1),
        strides=(4, 8, 16),
    )  # fmt: skip
    assert space.derived_statistics()["path_log_probability"] == pytest.approx(
        math.log(0.8 * 0.5 * 0.75)
    )
    assert space.derived_statistics()["skip_connections"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_derive_path_is_viterbi_and_never_none(seed):
    space = tiny(layers=5, seed=seed)
    with torch.no_grad():
        space.alphas.normal_(0, 2)
        space.alphas[:, OPS["none"]] = 10.0  # `none` dominates everywhere
        space.betas.normal_(0, 2)
    g = space.derive()
    assert all(op != "none" for op, _ in g.cell)
    assert list(g.path) == brute_force_path(space.transition_log_probabilities())
    round_trip = AutoDeepLabGenotype.from_dict(g.to_dict())
    assert round_trip == g


def test_derive_cell_shape_check():
    with pytest.raises(ValueError, match="expected weights of shape"):
        derive_cell(torch.zeros(14, 8), blocks=5)


def test_genotype_file_round_trip(space, tmp_path):
    save(space.derive(), tmp_path / "g.yaml")
    assert load(tmp_path / "g.yaml") == space.derive()


@pytest.mark.parametrize("atrous", ["full", "separable"])
def test_fused_edges_equal_separate_ops(atrous):
    """The grouped-conv mixed ops equal one ops.py module per (edge, op)."""
    torch.manual_seed(0)
    C, edges = 4, 3
    fused = _StateEdges(C, edges, atrous)
    x = torch.randn(6, C, 7, 6)  # e.g. 3 transitions × 2 images
    w = torch.softmax(torch.randn(edges, 8), dim=-1)
    out = fused(x, w)
    assert out.shape == (6, edges, C, 7, 6)

    def rows(name, edge):
        return fused.convs[name].weight[edge * C : (edge + 1) * C]

    for e in range(edges):
        ref = torch.zeros_like(x)
        for name in AUTODEEPLAB_PRIMITIVES:
            if name == "none":
                continue
            if name.startswith("atrous") and atrous == "separable":
                op = make_op(name.replace("atrous_conv", "dil_conv"), C, 1, affine=False)
            else:
                op = make_autodeeplab_op(name, C, 1, affine=False)
            k = name[-1]
            with torch.no_grad():
                if name.startswith("sep"):
                    for idx, key in ((1, "dw1"), (2, "pw1"), (5, "dw2"), (6, "pw2")):
                        op.op[idx].weight.copy_(rows(f"sep{k}_{key}", e))
                elif name.startswith("atrous") and atrous == "full":
                    op.op[1].weight.copy_(rows(f"atrous{k}", e))
                elif name.startswith("atrous"):
                    op.op[1].weight.copy_(rows(f"atrous{k}_dw", e))
                    op.op[2].weight.copy_(rows(f"atrous{k}_pw", e))
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            ref = ref + w[e, OPS[name]] * op(x)
        torch.testing.assert_close(out[:, e], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4, 4), (9, 8)])
@pytest.mark.parametrize("k,dilation", [(3, 1), (5, 1), (3, 2), (5, 2), (3, 24)])
def test_conv_skipping_padding_taps_is_exact(size, k, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 4, *size, requires_grad=True)
    weight = torch.randn(6, 4, k, k, requires_grad=True)
    ref = F.conv2d(x, weight, padding=dilation * (k // 2), dilation=dilation)
    out = _conv(x, weight, dilation, 1)
    torch.testing.assert_close(out, ref)
    g_ref = torch.autograd.grad(ref.square().sum(), (x, weight))
    g_out = torch.autograd.grad(out.square().sum(), (x, weight))
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b)


def test_checkpoint_cells_gives_identical_gradients():
    plain = tiny(layers=3)
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpoint_cells = True
    x = torch.randn(2, 3, 32, 32)
    loss_a, loss_b = loss_of(plain, x), loss_of(checkpointed, x)
    assert torch.equal(loss_a, loss_b)
    loss_a.backward()
    loss_b.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, msg=name)
    # BatchNorm statistics are updated once (the recomputation leaves them alone)
    for (name, a), (_, b) in zip(plain.named_buffers(), checkpointed.named_buffers()):
        assert torch.equal(a, b), name


def test_checkpoint_flag_from_constructor():
    space = tiny(layers=2, checkpoint_cells=True)
    loss_of(space, torch.randn(2, 3, 32, 32)).backward()
    assert space.betas.grad is not None and space.alphas.grad is not None


def test_partial_channels():
    plain = tiny(layers=3, filter_multiplier=4)
    pc = tiny(layers=3, filter_multiplier=4, partial_channels=2)
    x = torch.randn(2, 3, 32, 32)
    assert pc(x).shape == plain(x).shape == (2, 5, 32, 32)
    n_plain = sum(p.numel() for p in plain.weight_parameters())
    n_pc = sum(p.numel() for p in pc.weight_parameters())
    assert n_pc < n_plain
    assert pc.nodes["1_0"].edges[0].C == 2  # C / K channels through the mixed ops
    assert pc.nodes["1_0"].preprocess[0].conv.out_channels == 4
    loss_of(pc, x).backward()
    assert pc.alphas.grad.abs().sum() > 0 and pc.betas.grad.abs().sum() > 0
    assert len(pc.derive().cell) == 10


def test_channel_shuffle_interleaves_the_bypass():
    node = tiny(layers=2, filter_multiplier=4, partial_channels=2).nodes["1_0"]
    mixed = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    bypass = torch.tensor([10.0, 11.0]).view(1, 2, 1, 1)
    out = node._block(mixed, bypass)
    assert out[0, :, 0, 0].tolist() == [0.0, 10.0, 1.0, 11.0]  # PC-DARTS channel_shuffle


def test_separable_atrous():
    full = tiny(layers=3)
    separable = tiny(layers=3, atrous="separable")
    assert separable(torch.randn(2, 3, 32, 32)).shape == (2, 5, 32, 32)
    for key, node in full.nodes.items():
        n_full = sum(p.numel() for p in node.edges.parameters())
        assert sum(p.numel() for p in separable.nodes[key].edges.parameters()) < n_full, key


def test_one_cell_per_node():
    """The transitions into a node share its cell; the h[l-2] edges run once, on N images."""
    space = tiny(layers=3)
    node = space.nodes["2_1"]  # fed from strides 4, 8, 16 at layer 1, and from layer 0 at 8
    assert node.source_levels == [0, 1, 2] and len(node.preprocess) == 3
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = out.shape

        return hook

    node.edges[0].register_forward_hook(record("h[l-1]"))
    node.edges_pp.register_forward_hook(record("h[l-2]"))
    space(torch.randn(2, 3, 32, 32))
    assert seen["h[l-1]"] == (3 * 2, 5, 4, 4, 4)  # 3 transitions × 2 images, 5 blocks, C = F·2
    assert seen["h[l-2]"] == (2, 5, 4, 4, 4)


def test_eval_mode_and_no_grad(space):
    space.eval()
    try:
        with torch.no_grad():
            out = space(torch.randn(1, 3, 32, 32))
    finally:
        space.train()
    assert out.shape == (1, 5, 32, 32) and torch.isfinite(out).all()


def test_lattice_figure(space, tmp_path):
    figures = space.arch_figures()
    assert list(figures) == ["lattice"]
    fig = figures["lattice"]
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    red = [line for line in ax.lines if line.get_color() == "tab:red"]
    assert len(red) == 1
    assert list(red[0].get_ydata()) == [0, *space.derive().path]  # the decoded path from the stem
    fig.savefig(tmp_path / "lattice.png")
    assert (tmp_path / "lattice.png").stat().st_size > 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"strides": (8, 16)}, "strides must start at 4"),
        ({"strides": (4, 16)}, "strides must start at 4"),
        ({"partial_channels": 3, "filter_multiplier": 4}, "must divide"),
        ({"layers": 0}, "layers must be an integer"),
        ({"atrous": "dense"}, "atrous must be"),
        ({"alpha_init_std": -1.0}, "alpha_init_std"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**kwargs)


# ----------------------------------------------------------------- the experiment configs
REPO = Path(__file__).resolve().parents[3]


def test_search_config_cpu_sized(tmp_path, synthetic_root):
    """experiments/autodeeplab.yaml with the CPU-sized overrides of its header comment."""
    from lightning_nas.cli import NASCLI

    cli = NASCLI(
        args=[
            "fit",
            "-c",
            str(REPO / "experiments/autodeeplab.yaml"),
            "--trainer.max_epochs=2",
            "--model.init_args.arch_start_epoch=1",
            "--model.init_args.weight_lr_scheduler.init_args.T_max=2",
            "--model.init_args.space.init_args.layers=3",
            "--model.init_args.space.init_args.filter_multiplier=2",
            f"--data.init_args.root={synthetic_root}",
            "--data.init_args.num_train=16",
            "--data.init_args.num_val=8",
            "--data.init_args.image_size=32",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    space = cli.model.space
    assert isinstance(space, AutoDeepLabSpace) and space.num_classes == 6  # linked from the data
    assert space.filter_multiplier == 2 and space.layers == 3 and space.strides == (4, 8, 16, 32)
    a_opt = cli.model.optimizers()[1]
    assert a_opt.defaults["betas"] == (0.9, 0.999) and a_opt.defaults["lr"] == 0.003
    written = sorted(p.name for p in tmp_path.rglob("genotype*.yaml"))
    assert written == ["genotype.yaml", "genotype_epoch=000.yaml", "genotype_epoch=001.yaml"]
    latest = load(next(tmp_path.rglob("genotype.yaml")))
    assert latest == space.derive() and len(latest.path) == 3
    assert any(tmp_path.rglob("lattice_epoch=001.png"))


def test_retrain_config_with_a_searched_genotype(tmp_path, synthetic_root):
    from lightning_nas.cli import NASCLI

    genotype = tmp_path / "searched.yaml"
    save(tiny(layers=4).derive(), genotype)
    cli = NASCLI(
        args=[
            "fit",
            "-c",
            str(REPO / "experiments/retrain_autodeeplab.yaml"),
            "--trainer.fast_dev_run=true",
            f"--model.init_args.network.init_args.genotype={genotype}",
            "--model.init_args.network.init_args.filter_multiplier=4",
            f"--data.init_args.root={synthetic_root}",
            "--data.init_args.num_train=16",
            "--data.init_args.num_val=8",
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=2",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert cli.trainer.state.finished
    from lightning_nas.schedules import PolyLR

    assert cli.model.num_classes == 6
    assert isinstance(cli.trainer.lr_scheduler_configs[0].scheduler, PolyLR)
