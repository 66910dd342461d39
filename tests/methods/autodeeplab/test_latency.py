"""Auto-DeepLab latency: table configurations, derived and expected latency, the callback."""

import inspect
import itertools

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import lightning_nas.methods.autodeeplab.network as adl
from callbacks.latency_regularization import LatencyRegularization
from lightning_nas.data import SyntheticDataModule
from lightning_nas.genotypes import AutoDeepLabGenotype
from lightning_nas.latency import LatencyTable, MissingLatencyError, OpConfig, build_op
from lightning_nas.loss_terms import collect_terms
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES
from lightning_nas.methods.autodeeplab.network import low_level_cell
from lightning_nas.methods.autodeeplab.space import level_statistics
from lightning_nas.networks import AutoDeepLabNetwork
from lightning_nas.search import SearchModule
from lightning_nas.spaces import AutoDeepLabSpace

SIZE = (37, 45)  # odd sizes: exercises the ceil arithmetic of every level
OPS = [op for op in AUTODEEPLAB_PRIMITIVES if op != "none"]
HEAD = {"aspp_channels": 8, "decoder_channels": 8, "low_level_channels": 4}
CELL = (  # every op, inputs h[l-2], h[l-1] and blocks
    ("sep_conv_3x3", 0),
    ("atrous_conv_5x5", 1),
    ("skip_connect", 1),
    ("max_pool_3x3", 2),
    ("avg_pool_3x3", 3),
    ("sep_conv_5x5", 0),
)


def fake_ms(config: OpConfig) -> float:
    """Integer latencies that differ by op, channels and size (sums exact in float32)."""
    base = AUTODEEPLAB_PRIMITIVES.index(config.op) if config.op in OPS else 9
    return float(base * (config.C_in % 17 + config.H % 7 + 1) + config.stride + 1)


def tiny(layers: int = 4, seed: int = 0, **kw) -> AutoDeepLabSpace:
    torch.manual_seed(seed)
    kw = {"num_classes": 3, "filter_multiplier": 2, "blocks": 3, **kw}
    return AutoDeepLabSpace(layers=layers, **kw)


def table_for(space: AutoDeepLabSpace, size=SIZE) -> LatencyTable:
    return LatencyTable.build(
        space.latency_configs(size), input_size=size, measure=fake_ms, progress=False
    )


def all_paths(layers: int, levels: int) -> list[tuple[int, ...]]:
    """Every path from the stem (level 0): one step of at most one level per layer."""
    return [
        p
        for p in itertools.product(range(levels), repeat=layers)
        if all(abs(b - a) <= 1 for a, b in zip((0, *p), p))
    ]


def level_sizes(size, levels):
    """Feature sizes per level, recomputed here: stride 4, then ceil halves."""
    h, w = size
    for _ in range(2):
        h, w = (h + 1) // 2, (w + 1) // 2
    sizes = [(h, w)]
    for _ in range(levels - 1):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


def set_path(space: AutoDeepLabSpace, path) -> None:
    """β logits ±100: the transitions along ``path`` get probability 1."""
    with torch.no_grad():
        space.betas.fill_(-100.0)
        for layer, (a, b) in enumerate(zip((0, *path), path)):
            space.betas[layer, a, b - a + 1] = 100.0


# ----------------------------------------------------------------------------- derived network
@pytest.mark.parametrize(
    "path",
    [
        (0, 0, 1, 2, 1, 0),  # decoder reads cell 1; finer moves resize h[l-1] and h[l-2]
        (1, 2, 3, 2, 1, 0),  # decoder reads the stem; ends at level 0: no ASPP upsampling
        (1, 0, 1, 2, 3, 3),  # starts at level 1, decoder reads cell 1
    ],
)
def test_derived_configs_are_what_the_network_runs(path, monkeypatch) -> None:
    """Cell-op input shapes and strides, every resize and the multiply-adds of the network."""
    genotype = AutoDeepLabGenotype(cell=CELL, path=path)
    space = tiny(layers=len(path))
    configs = space.derived_latency_configs(genotype, SIZE, **HEAD)
    net = AutoDeepLabNetwork(genotype, num_classes=3, filter_multiplier=2, **HEAD).eval()
    seen = []
    for cell in net.cells:
        for k, op in enumerate(cell.ops):
            stride = cell.stride if cell.indices[k] < 2 else 1
            op.register_forward_pre_hook(lambda m, a, s=stride: seen.append((*a[0].shape[1:], s)))
    resizes = []
    interpolate = F.interpolate

    def recording(x, size=None, **kw):
        if kw.get("align_corners"):  # the network's resizes (a stride-2 atrous op has its own)
            resizes.append((x.shape[1], tuple(x.shape[-2:]), tuple(size)))
        return interpolate(x, size=size, **kw)

    x = torch.randn(1, 3, *SIZE)
    monkeypatch.setattr(F, "interpolate", recording)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = net(x)
    monkeypatch.setattr(F, "interpolate", interpolate)
    assert [(c.C_in, c.H, c.W, c.stride) for c in configs if c.op in OPS] == seen
    expected_resizes = []
    for c in configs:
        low = (-(-c.H // c.stride), -(-c.W // c.stride))
        if c.op == "adl_upsample":
            expected_resizes.append((c.C_in, low, (c.H, c.W)))
        elif c.op == "adl_downsample":
            expected_resizes.append((c.C_in, (c.H, c.W), low))
    assert expected_resizes == resizes
    assert any(c.op == "adl_downsample" for c in configs)  # h[-2] of cell 0 (stride 2 → 4)
    macs = 0
    for config in configs:
        module, shapes = build_op(config, (space.latency_op,))
        with FlopCounterMode(display=False) as op_counter, torch.no_grad():
            y = module.eval()(*[torch.randn(1, *s) for s in shapes])
        macs += op_counter.get_total_flops()
        assert y.shape[1] == config.C_out, config.key
    assert y.shape == out.shape  # the last entry: logits at the input size
    assert macs == counter.get_total_flops() > 0
    project = [c for c in configs if c.op == "conv1x1_bn_relu"]
    assert project[0].C_in == (128 if low_level_cell(path) is None else 3 * 2)
    assert space.derived_latency(table_for(space), genotype) == pytest.approx(
        table_for(space).total(space.derived_latency_configs(genotype, SIZE))
    )


def test_head_defaults_are_the_networks() -> None:
    defaults = inspect.signature(AutoDeepLabNetwork).parameters
    for fn in (adl.autodeeplab_latency_configs, AutoDeepLabSpace.derived_latency_configs):
        params = inspect.signature(fn).parameters
        for name in HEAD:
            assert params[name].default == defaults[name].default, (fn, name)


def test_latency_configs_are_exactly_what_derivable_networks_need() -> None:
    """Union over every path and op of the derived configurations = the table's list."""
    space = tiny(layers=4)
    configs = space.latency_configs(SIZE)
    keys = [c.key for c in configs]
    assert len(keys) == len(set(keys)) and not any(k.startswith("none|") for k in keys)
    needed = set()
    for path in all_paths(4, 4):
        for op in OPS:  # every op on edges from h[l-2], h[l-1] and from blocks
            cell = ((op, 0), (op, 1), (op, 2), (op, 1), (op, 3), (op, 0))
            genotype = AutoDeepLabGenotype(cell=cell, path=path)
            needed |= {c.key for c in space.derived_latency_configs(genotype, SIZE)}
    assert needed == set(keys)
    table = table_for(space)
    for seed in range(10):  # random α, β: the derived network is always covered
        torch.manual_seed(seed)
        with torch.no_grad():
            space.alphas.normal_()
            space.betas.normal_(std=3.0)
        assert space.derived_latency(table) > 0


def test_every_latency_config_builds_and_runs() -> None:
    space = tiny(layers=2, strides=(4, 8, 16))
    for config in space.latency_configs((9, 11)):
        module, shapes = build_op(config, (space.latency_op,))
        with torch.no_grad():
            y = module.eval()(*[torch.randn(1, *s) for s in shapes])
        assert y.shape[1] == config.C_out, config.key


# ----------------------------------------------------------------------------- expected latency
def test_one_hot_expected_latency_is_the_table_sum_along_the_path() -> None:
    space = tiny(layers=5)
    table = table_for(space)
    sizes = level_sizes(SIZE, 4)
    gen = torch.Generator().manual_seed(3)
    rows = [(b, j) for b in range(space.blocks) for j in range(b + 2)]
    for path in [(1, 2, 3, 2, 1), (0, 0, 1, 0, 0), (1, 1, 0, 1, 2)]:
        choice = torch.randint(1, len(AUTODEEPLAB_PRIMITIVES), (len(rows),), generator=gen)
        with torch.no_grad():
            space.alphas.fill_(-100.0)
            space.alphas[torch.arange(len(rows)), choice] = 100.0
        set_path(space, path)
        total = 0.0
        for prev, level in zip((0, *path), path):  # every edge with its op, recomputed here
            C = 2 * 2**level
            for (_, j), k in zip(rows, choice.tolist()):
                if j < 2:
                    size, stride = sizes[min(prev, level)], 2 if level > prev else 1
                else:
                    size, stride = sizes[level], 1
                total += table[OpConfig(AUTODEEPLAB_PRIMITIVES[k], C, C, *size, stride)]
        # fixed parts and head: the derived network's (checked against the real network above)
        genotype = AutoDeepLabGenotype(cell=CELL, path=path)
        total += table.total(
            c for c in space.derived_latency_configs(genotype, SIZE) if c.op not in OPS
        )
        assert space.expected_latency(table).item() == pytest.approx(total, rel=1e-6)


def test_expected_latency_is_the_path_expectation_of_the_derived_latency() -> None:
    """Soft β, α one-hot on a genotype (``none`` elsewhere): Σ_paths P(path) · derived."""
    space = tiny(layers=4, seed=1)
    table = table_for(space)
    cell = CELL
    with torch.no_grad():
        space.betas.normal_(std=1.5)
        space.alphas.fill_(-100.0)
        space.alphas[:, 0] = 100.0  # none
        for b in range(space.blocks):
            for op, j in cell[2 * b : 2 * b + 2]:
                space.alphas[b * (b + 3) // 2 + j] = -100.0
                space.alphas[b * (b + 3) // 2 + j, AUTODEEPLAB_PRIMITIVES.index(op)] = 100.0
    probs = space.transition_probabilities().detach().double()
    expected, stem_low, total_p = 0.0, 0.0, 0.0
    for path in all_paths(4, 4):
        p = 1.0
        for layer, (a, b) in enumerate(zip((0, *path), path)):
            p *= float(probs[layer, a, b - a + 1])
        total_p += p
        genotype = AutoDeepLabGenotype(cell=cell, path=path)
        expected += p * space.derived_latency(table, genotype)
        stem_low += p * (low_level_cell(path) is None)
    assert total_p == pytest.approx(1.0)
    assert space.expected_latency(table).item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        _, _, p_stem = level_statistics(space.transition_matrices().double())
    assert p_stem.item() == pytest.approx(stem_low, rel=1e-9) and 0 < stem_low < 1


def test_gradients_and_decoupled_components() -> None:
    space = tiny(layers=3, seed=2)
    table = table_for(space)
    latency = space.expected_latency(table)
    assert latency.shape == () and latency.requires_grad
    latency.backward()
    for p in (space.alphas, space.betas):
        assert p.grad is not None and p.grad.abs().sum() > 0
    components = space.latency_components(table)
    assert components.keys() == {"operators", "strides"}
    for name, own, other in (
        ("operators", space.alphas, space.betas),
        ("strides", space.betas, space.alphas),
    ):
        space.zero_grad(set_to_none=True)
        components[name].backward()
        assert own.grad is not None and own.grad.abs().sum() > 0, name
        assert other.grad is None, name
    # uniform β is uniform over each node's outgoing transitions
    T = space.transition_matrices("uniform")
    assert torch.allclose(T[1, 0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    assert torch.allclose(T[1, 1], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))


def test_latency_tensors_are_cached_per_table_and_size() -> None:
    space = tiny(layers=2)
    table = table_for(space)
    first = space._latency_tensors(table, SIZE, space.alphas)
    space.expected_latency(table)
    assert space._latency_tensors(table, SIZE, space.alphas) is first
    with pytest.raises(MissingLatencyError, match="rebuild"):
        space.expected_latency(table, input_size=(32, 32))


# ----------------------------------------------------------------------------- callback
def test_latency_regularization_with_auto_deeplab(tmp_path) -> None:
    space = tiny(layers=3)
    path = str(table_for(space, (32, 32)).save(tmp_path / "table.json"))
    module = SearchModule(space)
    cb = LatencyRegularization(path, weight=0.5)
    cb.setup(None, module, "fit")  # checks the table covers the space
    terms = collect_terms([cb], "arch", module, None, None)
    components = space.latency_components(cb.table)
    # the space's own default: FasterSeg's released two-term weights, 1/500 and 499/500
    assert space.latency_component_weights() == {"operators": 1 / 500, "strides": 499 / 500}
    r0 = 1 / 500
    two = r0 * components["operators"] + (1 - r0) * components["strides"]
    assert torch.allclose(terms["LatencyRegularization"], 0.5 * two, rtol=1e-7, atol=0)
    assert collect_terms([cb], "weight", module, None, None) == {}
    assert cb.current_latency(space) == space.derived_latency(cb.table)

    optimizer = torch.optim.Adam(space.arch_parameters().values(), lr=0.1)
    before = space.expected_latency(cb.table).item()
    for _ in range(5):
        optimizer.zero_grad()
        cb.arch_loss(module, None, None).backward()
        optimizer.step()
    assert space.expected_latency(cb.table).item() < before


def test_search_logs_the_latency_term(tmp_path, synthetic_root) -> None:
    space = tiny(layers=2, strides=(4, 8, 16), num_classes=6)
    path = str(table_for(space, (32, 32)).save(tmp_path / "table.json"))
    cb = LatencyRegularization(path, weight=1.0)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        max_epochs=1,
        limit_train_batches=1,
        callbacks=[cb],
    )
    data = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, search=True, batch_size=2
    )
    trainer.fit(SearchModule(space), data)
    m = trainer.callback_metrics
    for key in ("latency/operators_ms", "latency/strides_ms", "latency/derived_ms"):
        assert key in m, key
    assert float(m["train/arch_loss/LatencyRegularization"]) > 0
