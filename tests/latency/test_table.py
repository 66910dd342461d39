"""Latency tables (fake timer), the DARTS expected latency against the real network's shapes."""

import json

import pytest
import torch

from lightning_nas.genotypes import DartsGenotype
from lightning_nas.latency import (
    LatencyTable,
    LatencyTableError,
    MissingLatencyError,
    OpConfig,
    device_name,
)
from lightning_nas.latency.cli import latency_main
from lightning_nas.latency.table import _FIELDS
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES
from lightning_nas.methods.darts.network import DartsNetwork
from lightning_nas.methods.darts.space import DartsSpace, _MixedOp

SIZE = (20, 24)  # odd sizes after two reductions: exercises the ceil arithmetic


def fake_ms(config: OpConfig) -> float:
    """Integer latencies: sums are exact in float32."""
    base = DARTS_PRIMITIVES.index(config.op) if config.op in DARTS_PRIMITIVES else 10
    return float(base * (config.C_in + config.H) + 3)


def tiny_space(**kw):
    torch.manual_seed(0)
    kw = {"num_classes": 5, "C": 4, "layers": 4, "steps": 3, "multiplier": 2, **kw}
    return DartsSpace(**kw)


def table_for(space, size=SIZE, measure=fake_ms):
    return LatencyTable.build(
        space.latency_configs(size), input_size=size, measure=measure, progress=False
    )


# ----------------------------------------------------------------------------- OpConfig
def test_op_config_key_is_stable_and_round_trips():
    c = OpConfig("sep_conv_3x3", 16, 16, 32, 64, stride=2)
    assert c.key == "sep_conv_3x3|Cin=16|Cout=16|H=32|W=64|stride=2"
    e = OpConfig("mbconv", 16, 24, 8, 8, 1, expansion=6)
    assert e.expansion == 6.0 and e.key.endswith("|expansion=6.0")
    for cfg in (c, e, OpConfig("conv", 3, 8, 7, 9, 1, expansion=1 / 3)):
        assert OpConfig.from_key(cfg.key) == cfg
    assert hash(c) == hash(OpConfig("sep_conv_3x3", 16, 16, 32, 64, 2))


@pytest.mark.parametrize(
    "key",
    [
        "sep_conv_3x3|Cin=16|Cout=16|H=32|W=32",  # no stride
        "sep_conv_3x3|Cin=16|Cout=16|H=32|W=32|stride=1|foo=2",
        "sep_conv_3x3|Cout=16|Cin=16|H=32|W=32|stride=1",  # non-canonical order
        "sep_conv_3x3|Cin=0|Cout=16|H=32|W=32|stride=1",
        "|Cin=16|Cout=16|H=32|W=32|stride=1",
    ],
)
def test_op_config_rejects_bad_keys(key):
    with pytest.raises(ValueError, match="latency key"):
        OpConfig.from_key(key)


# ----------------------------------------------------------------------------- table
def test_build_measures_each_config_once_and_records_metadata():
    calls = []

    def measure(c):
        calls.append(c)
        return 1.5

    cfg = OpConfig("skip_connect", 4, 4, 8, 8)
    table = LatencyTable.build(
        [cfg, cfg, OpConfig("add", 4, 4, 8, 8)],
        input_size=(8, 8),
        batch_size=2,
        dtype=torch.float32,
        measure=measure,
        progress=False,
    )
    assert len(calls) == 2 and len(table) == 2
    assert table[cfg] == table[cfg.key] == 1.5
    meta = table.metadata()
    assert tuple(meta) == _FIELDS
    assert meta["device"] == "cpu" and meta["device_name"] == device_name("cpu")
    assert meta["dtype"] == "float32" and meta["input_size"] == [8, 8]
    assert meta["batch_size"] == 2 and meta["torch_version"] == torch.__version__


def test_save_load_round_trip(tmp_path):
    table = table_for(tiny_space())
    path = table.save(tmp_path / "sub" / "t.json")
    loaded = LatencyTable.load(path, device="cpu", dtype="float32", input_size=SIZE)
    assert dict(loaded.entries) == dict(table.entries)
    assert loaded.metadata() == table.metadata()
    assert loaded.source == str(path)


def test_lookup_of_a_missing_config_names_it_and_the_file(tmp_path):
    path = table_for(tiny_space()).save(tmp_path / "t.json")
    table = LatencyTable.load(path)
    missing = OpConfig("sep_conv_3x3", 999, 999, 4, 4)
    with pytest.raises(
        MissingLatencyError, match=r"t\.json has no entry for .sep_conv_3x3\|Cin=999"
    ):
        table[missing]
    with pytest.raises(KeyError):  # a MissingLatencyError is a KeyError
        table.latency(missing)
    assert missing not in table
    with pytest.raises(MissingLatencyError, match="lacks 1 configuration.*needed by X"):
        table.require([missing, missing], context="X")


def test_table_pickles_and_deep_copies():
    import copy
    import pickle

    table = table_for(tiny_space())
    for clone in (pickle.loads(pickle.dumps(table)), copy.deepcopy(table)):
        assert dict(clone.entries) == dict(table.entries) and clone.digest == table.digest
        with pytest.raises(TypeError):
            clone.entries["x"] = 1.0


def test_table_is_never_filled_by_lookups():
    table = table_for(tiny_space())
    before = dict(table.entries)
    with pytest.raises(MissingLatencyError):
        table[OpConfig("add", 1, 1, 1, 1)]
    assert dict(table.entries) == before
    with pytest.raises(TypeError):
        table.entries["x"] = 1.0  # read-only


def _write(tmp_path, **changes):
    data = {**table_for(tiny_space()).metadata()}
    data["entries"] = {"add|Cin=4|Cout=4|H=8|W=8|stride=1": 0.1}
    data.update(changes)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema_version": 99}, "schema version 99"),
        ({"kind": "other"}, "not a lightning_nas latency table"),
        ({"entries": {"bogus": 1.0}}, "malformed latency key 'bogus'"),
        ({"entries": {"add|Cin=4|Cout=4|H=8|W=8|stride=1": -1.0}}, "must be >= 0"),
        ({"entries": {"add|Cin=4|Cout=4|H=8|W=8|stride=1": "fast"}}, "finite number"),
        ({"input_size": [8]}, "input_size"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_load_rejects_invalid_files_naming_the_file(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(LatencyTableError, match=message) as info:
        LatencyTable.load(path)
    assert str(path) in str(info.value)


def test_load_rejects_missing_and_non_json_files(tmp_path):
    with pytest.raises(LatencyTableError, match="no such file"):
        LatencyTable.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LatencyTableError, match="JSON"):
        LatencyTable.load(tmp_path / "bad.json")


def test_load_refuses_another_setup_unless_allowed(tmp_path):
    path = _write(tmp_path, device_name="Some Other GPU", device="cuda")
    with pytest.raises(LatencyTableError, match="Some Other GPU"):
        LatencyTable.load(path, device="cpu")
    path = _write(tmp_path)
    with pytest.raises(LatencyTableError, match="dtype float32, not float16"):
        LatencyTable.load(path, dtype=torch.float16)
    with pytest.raises(LatencyTableError, match=r"input size \[20, 24\], not \[64, 64\]"):
        LatencyTable.load(path, input_size=(64, 64))
    with pytest.raises(LatencyTableError, match="batch size 1, not 8"):
        LatencyTable.load(path, batch_size=8)
    assert len(LatencyTable.load(path, input_size=(64, 64), allow_mismatch=True)) == 1


def test_digest_identifies_the_contents_and_the_space_cache_follows_it(tmp_path):
    space = tiny_space()
    a = table_for(space)
    b = table_for(space, measure=lambda c: 2 * fake_ms(c))
    assert LatencyTable.load(a.save(tmp_path / "a.json")).digest == a.digest != b.digest
    la = space.expected_latency(a).detach()
    assert torch.equal(space.expected_latency(b).detach(), 2 * la)
    assert torch.equal(space.expected_latency(a).detach(), la)


# ----------------------------------------------------------------------------- DARTS
def _edge_inputs(space, x):
    """(cell index, edge index, stride, input shape) of every MixedOp, from the real forward."""
    seen = []
    hooks = []
    for ci, cell in enumerate(space.cells):
        for e, mixed in enumerate(cell.ops):
            assert isinstance(mixed, _MixedOp)
            stride = 2 if cell.reduction and _edge_input(space.steps, e) < 2 else 1

            def hook(m, args, ci=ci, e=e, stride=stride):
                seen.append((ci, e, stride, tuple(args[0].shape[1:])))

            hooks.append(mixed.register_forward_pre_hook(hook))
    with torch.no_grad():
        space(x)
    for h in hooks:
        h.remove()
    return seen


def _edge_input(steps, e):
    for i in range(steps):
        if e < i + 2:
            return e
        e -= i + 2
    raise AssertionError


def test_expected_latency_of_one_hot_alpha_is_the_table_sum_of_the_chosen_ops():
    space = tiny_space()
    table = table_for(space)
    gen = torch.Generator().manual_seed(1)
    num_edges, num_ops = space.alphas_normal.shape
    choice = {
        r: torch.randint(1, num_ops, (num_edges,), generator=gen) for r in ("normal", "reduce")
    }
    with torch.no_grad():
        for r, alpha in (("normal", space.alphas_normal), ("reduce", space.alphas_reduce)):
            alpha.fill_(float("-inf"))
            alpha[torch.arange(num_edges), choice[r]] = 0.0
    x = torch.randn(1, 3, *SIZE)
    chosen = 0.0
    for ci, e, stride, (c, h, w) in _edge_inputs(space, x):
        r = "reduce" if space.cells[ci].reduction else "normal"
        op = DARTS_PRIMITIVES[int(choice[r][e])]
        chosen += table[OpConfig(op, c, c, h, w, stride)]
    with torch.no_grad():  # all edges "none": only the fixed parts remain
        saved = {k: v.clone() for k, v in space.arch_parameters().items()}
        for alpha in space.arch_parameters().values():
            alpha.fill_(float("-inf"))
            alpha[:, 0] = 0.0
        fixed = space.expected_latency(table).detach().item()
        for k, v in space.arch_parameters().items():
            v.copy_(saved[k])
    assert chosen > 0 and fixed > 0
    assert space.expected_latency(table).detach().item() == chosen + fixed


def test_expected_latency_is_differentiable_and_moves_with_alpha():
    space = tiny_space()
    table = table_for(space)
    lat = space.expected_latency(table)
    assert lat.shape == () and lat.requires_grad
    lat.backward()
    for alpha in space.arch_parameters().values():
        assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    # gradient descent on the latency alone lowers it
    with torch.no_grad():
        for alpha in space.arch_parameters().values():
            alpha -= 0.1 * alpha.grad
    assert space.expected_latency(table).detach().item() < lat.detach().item()
    assert space.latency_components(table).keys() == {"operators"}
    components = space.latency_components(table)
    assert torch.equal(components["operators"], space.expected_latency(table))


def test_expected_latency_needs_the_tables_input_size():
    space = tiny_space()
    table = table_for(space)
    with pytest.raises(MissingLatencyError, match="rebuild"):
        space.expected_latency(table, input_size=(32, 32))


def test_derived_latency_matches_the_discrete_networks_ops():
    """The derived estimate: the table entries at the shapes the DartsNetwork really runs."""
    space = tiny_space()
    table = table_for(space)
    genotype = DartsGenotype(
        normal=(
            ("sep_conv_3x3", 0),
            ("skip_connect", 1),
            ("dil_conv_5x5", 2),
            ("max_pool_3x3", 0),
            ("avg_pool_3x3", 3),
            ("sep_conv_5x5", 1),
        ),
        normal_concat=(3, 4),
        reduce=(
            ("max_pool_3x3", 0),
            ("dil_conv_3x3", 1),
            ("skip_connect", 2),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_5x5", 3),
        ),
        reduce_concat=(3, 4),
    )
    net = DartsNetwork(genotype, num_classes=5, C=4, layers=4)
    shapes = {}
    hooks = [
        op.register_forward_pre_hook(lambda m, a, key=(ci, k): shapes.__setitem__(key, a[0].shape))
        for ci, cell in enumerate(net.cells)
        for k, op in enumerate(cell.ops)
    ]
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, 3, *SIZE))
    for h in hooks:
        h.remove()
    ops_ms = 0.0
    for ci, cell in enumerate(net.cells):
        pairs = genotype.reduce if cell.reduction else genotype.normal
        for k, (op, j) in enumerate(pairs):
            _, c, h, w = shapes[(ci, k)]
            ops_ms += table[OpConfig(op, c, c, h, w, 2 if cell.reduction and j < 2 else 1)]
    configs = space.derived_latency_configs(genotype, SIZE)
    fixed_ms = sum(table[c] for c in configs if c.op not in DARTS_PRIMITIVES)
    assert space.derived_latency(table, genotype) == pytest.approx(ops_ms + fixed_ms, abs=1e-9)
    # fixed parts: stem, 2 preprocess + 2·steps adds + concat per cell, 2 head ops
    assert len(configs) - 6 * len(net.cells) == 1 + len(net.cells) * (3 + 2 * 3) + 2
    assert space.derived_latency(table) == table.total(space.derived_latency_configs(None, SIZE))


def test_latency_configs_cover_the_real_edge_shapes():
    space = tiny_space(stem_stride=2)
    keys = {c.key for c in space.latency_configs(SIZE)}
    for _, _, stride, (c, h, w) in _edge_inputs(space, torch.randn(1, 3, *SIZE)):
        for op in DARTS_PRIMITIVES[1:]:
            assert OpConfig(op, c, c, h, w, stride).key in keys
    assert not any(k.startswith("none|") for k in keys)


def test_cli_build_and_show(tmp_path, capsys, monkeypatch):
    import lightning_nas.latency.cli as cli_module
    import lightning_nas.latency.table as table_module

    monkeypatch.setattr(table_module, "OpTimer", lambda *a, **k: fake_ms)
    monkeypatch.setattr(cli_module, "steady_allocator", lambda: False)  # process-wide
    space_yaml = tmp_path / "space.yaml"
    space_yaml.write_text(
        "class_path: lightning_nas.spaces.DartsSpace\n"
        "init_args: {C: 4, layers: 3, steps: 2, multiplier: 2}\n"
    )
    out = tmp_path / "t.json"
    argv = [
        "build",
        "--space-config",
        str(space_yaml),
        "--space-arg",
        "num_classes=5",
        "--input-size",
        "16",
        "16",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert latency_main(argv) == 0
    table = LatencyTable.load(out)
    space = DartsSpace(num_classes=5, C=4, layers=3, steps=2, multiplier=2)
    assert {c.key for c in space.latency_configs((16, 16))} <= set(table.entries)
    assert latency_main(["show", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"entries: {len(table)}" in printed and "input_size: [16, 16]" in printed
    assert latency_main(["show", str(tmp_path / "absent.json")]) == 2
    assert "no such file" in capsys.readouterr().err
