"""LatencyRegularization: the term, its setup checks, logging, adaptive λ and resume."""

import lightning.pytorch as pl
import pytest
import torch

from callbacks.latency_regularization import LatencyRegularization, adapt_weight, decoupled_latency
from lightning_nas.data import SyntheticDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.latency import LatencyTable, LatencyTableError, MissingLatencyError, OpConfig
from lightning_nas.methods.fasterseg.latency import (
    FASTERSEG_COMPONENT_WEIGHTS,
    release_component_weights,
)
from lightning_nas.search import SearchModule
from lightning_nas.segmentation import SegmentationModule
from lightning_nas.spaces import DartsSpace

SIZE = (32, 32)


def tiny_space(seed=0, C=4):
    torch.manual_seed(seed)
    return DartsSpace(num_classes=6, C=C, layers=3, steps=2, multiplier=2, stem_multiplier=2)


def fake_ms(c: OpConfig) -> float:
    """Convolutions expensive, everything else cheap."""
    return 50.0 if "conv" in c.op and c.op not in ("relu_conv1x1", "relu_conv1x1_bn") else 1.0


@pytest.fixture
def table_path(tmp_path):
    table = LatencyTable.build(
        tiny_space().latency_configs(SIZE), input_size=SIZE, measure=fake_ms, progress=False
    )
    return str(table.save(tmp_path / "table.json"))


def data(root):
    return SyntheticDataModule(
        root=root, num_train=16, num_val=8, image_size=32, search=True, batch_size=4
    )


def trainer(tmp_path, callbacks, **kw):
    kw.setdefault("max_epochs", 1)
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        callbacks=callbacks,
        **kw,
    )


# ----------------------------------------------------------------------------- maths
def test_decoupled_weights_are_normalised_over_present_components():
    comps = {k: torch.tensor(v) for k, v in (("operators", 10.0), ("strides", 20.0))}
    w = FASTERSEG_COMPONENT_WEIGHTS
    got = float(decoupled_latency(comps, w))
    r0 = w["operators"] / (w["operators"] + w["strides"])
    assert got == pytest.approx(r0 * 10 + (1 - r0) * 20)
    assert r0 == pytest.approx(1 / 500, rel=0.01)  # FasterSeg's two-term ratio
    three = {**comps, "expansion": torch.tensor(40.0)}
    assert float(decoupled_latency(three, w)) == pytest.approx((1 * 10 + 497 * 20 + 2 * 40) / 500)
    with pytest.raises(ConfigError, match="no weight for latency component"):
        decoupled_latency({**comps, "depth": torch.tensor(1.0)}, w)


def test_adapt_weight_window():
    assert adapt_weight(1.0, 175.0, (155.0, 175.0)) == 0.5
    assert adapt_weight(1.0, 155.0, (155.0, 175.0)) == 2.0
    # the release (train_search.py): halve if either pair is at/above max, elif double if either
    # is at/below min
    assert adapt_weight(1.0, [160.0, 175.0], (155.0, 175.0)) == 0.5
    assert adapt_weight(1.0, [150.0, 170.0], (155.0, 175.0)) == 2.0
    assert adapt_weight(1.0, [150.0, 180.0], (155.0, 175.0)) == 0.5
    assert adapt_weight(1.0, [160.0, 170.0], (155.0, 175.0)) == 1.0
    import numpy as np

    assert adapt_weight(1.0, np.float32(180.0), (155.0, 175.0)) == 0.5
    assert adapt_weight(1.0, torch.tensor([150.0, 160.0]), (155.0, 175.0)) == 2.0


def test_default_weights_are_the_releases_for_the_components_present():
    # search/architect.py: r0 = 1/500, r1 = 499/500 without widths; 1/500, 497/500, 2/500 with
    two = release_component_weights({"operators": 0, "strides": 0})
    assert two == {"operators": 0.002, "strides": 0.998}
    comps = {"operators": torch.tensor(10.0), "strides": torch.tensor(20.0)}
    assert float(decoupled_latency(comps, two)) == pytest.approx(0.002 * 10 + 0.998 * 20)
    three = release_component_weights({"operators": 0, "strides": 0, "expansion": 0})
    assert three == {"operators": 0.002, "strides": 0.994, "expansion": 0.004}
    # the callback's default (component_weights: null) is the space's own declaration
    from lightning_nas.methods.fasterseg.space import FasterSegSpace

    tiny = {"num_classes": 3, "layers": 8, "Fch": 1, "teacher": False}
    assert FasterSegSpace(widths=(6, 12), **tiny).latency_component_weights() == three
    assert FasterSegSpace(widths=(12,), **tiny).latency_component_weights() == two
    assert tiny_space().latency_component_weights() == {"operators": 1.0}  # DARTS: one term


def test_lambda_adapts_only_after_architecture_epochs_on_either_pair(table_path):
    from types import SimpleNamespace

    class PairSpace:
        """A space with two candidate networks (pairs) whose table latencies are 4 ms and 8 ms."""

        def latency_configs(self, input_size):
            return []

        def latency_op(self, config):
            return None

        def expected_latency(self, table, size=None):
            return torch.tensor(6.0)

        def derive_candidates(self):
            return {"2-0": (2, 0), "2-1": (2, 1)}

        def derived_latency(self, table, genotype=None, input_size=None):
            return {(2, 0): 4.0, (2, 1): 8.0}.get(genotype, 6.0)

    cb = LatencyRegularization(table_path, weight=0.01, fps_window=(150.0, 200.0))
    cb.table = LatencyTable.load(table_path)
    module = SimpleNamespace(space=PairSpace(), current_epoch=0, arch_start_epoch=2)
    # 250 and 125 FPS: one pair above the window → the release halves λ
    assert cb.candidate_latencies(module.space) == [4.0, 8.0]
    for epoch in (0, 1):  # warm-up epochs: no architecture step, no adaptation
        module.current_epoch = epoch
        cb.on_train_epoch_end(None, module)
        assert cb.weight == 0.01
    module.current_epoch = 2
    cb.on_train_epoch_end(None, module)
    assert cb.weight == 0.005
    # in reference ms (a unit of 0.5 table ms): 500 and 250 FPS
    unit = LatencyRegularization(table_path, fps_window=(150.0, 200.0), latency_unit_ms=0.5)
    unit.table = cb.table
    assert unit.candidate_latencies(module.space) == [8.0, 16.0]


def test_latency_unit_rescales_the_term_and_can_be_measured(table_path, tmp_path):
    from lightning_nas import genotypes

    module = SearchModule(tiny_space())
    plain = LatencyRegularization(table_path, weight=0.5)
    plain.setup(None, module, "fit")
    expected = float(module.space.expected_latency(plain.table))
    assert float(plain.arch_loss(module, None, None)) == pytest.approx(0.5 * expected)
    scaled = LatencyRegularization(table_path, weight=0.5, latency_unit_ms=4.0)
    scaled.setup(None, module, "fit")
    assert float(scaled.arch_loss(module, None, None)) == pytest.approx(0.5 * expected / 4.0)
    # measured: the reference genotype's table latency is reference_latency_ms reference ms
    path = tmp_path / "reference.yaml"
    genotypes.save(module.space.derive(), path)
    table_ms = module.space.derived_latency(plain.table)
    measured = LatencyRegularization(
        table_path, weight=0.5, reference_genotype=str(path), reference_latency_ms=2.0
    )
    measured.setup(None, module, "fit")
    assert measured.latency_unit_ms == pytest.approx(table_ms / 2.0)
    term = float(measured.arch_loss(module, None, None))
    assert term == pytest.approx(0.5 * expected * 2.0 / table_ms)
    assert measured.current_latency(module.space) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="not found"):
        LatencyRegularization(
            table_path, reference_genotype=str(tmp_path / "no.yaml"), reference_latency_ms=1.0
        ).setup(None, module, "fit")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": -1.0},
        {"fps_window": (175.0, 155.0)},
        {"target_ms": 0.0},
        {"component_weights": {"operators": -1.0}},
        {"latency_unit_ms": 0.0},
        {"reference_genotype": "g.yaml"},
        {"reference_latency_ms": 6.4},
        {"reference_genotype": "g.yaml", "reference_latency_ms": -1.0},
        {"reference_genotype": "g.yaml", "reference_latency_ms": 6.4, "latency_unit_ms": 2.0},
    ],
)
def test_invalid_arguments_raise_at_construction(kwargs):
    with pytest.raises(ConfigError):
        LatencyRegularization("t.json", **kwargs)


# ----------------------------------------------------------------------------- setup
def test_setup_errors_name_the_space_and_the_table(table_path, tmp_path):
    class NoLatencySpace(torch.nn.Module):
        pass

    class Holder(torch.nn.Module):
        def __init__(self, space):
            super().__init__()
            self.space = space

    with pytest.raises(ConfigError, match="NoLatencySpace is not latency aware"):
        LatencyRegularization(table_path).setup(None, Holder(NoLatencySpace()), "fit")
    seg = SegmentationModule(torch.nn.Conv2d(3, 6, 1), num_classes=6)
    with pytest.raises(ConfigError, match="SegmentationModule has no search space"):
        LatencyRegularization(table_path).setup(None, seg, "fit")
    wider = SearchModule(tiny_space(C=8))  # the table was built for C=4
    with pytest.raises(MissingLatencyError, match=r"needed by DartsSpace at \(32, 32\)"):
        LatencyRegularization(table_path).setup(None, wider, "fit")
    with pytest.raises(LatencyTableError, match="input size"):
        LatencyRegularization(table_path, input_size=(64, 64)).setup(None, wider, "fit")
    with pytest.raises(LatencyTableError, match="no such file"):
        LatencyRegularization(str(tmp_path / "absent.json")).setup(None, wider, "fit")


def test_term_is_lambda_times_expected_latency_and_respects_the_target(table_path):
    module = SearchModule(tiny_space())
    cb = LatencyRegularization(table_path, weight=0.25)
    cb.setup(None, module, "fit")
    expected = module.space.expected_latency(cb.table)
    term = cb.arch_loss(module, None, None)
    assert torch.equal(term, 0.25 * expected)
    term.backward()
    assert module.space.alphas_normal.grad.abs().sum() > 0
    assert cb.weight_loss(module, None, None) is None

    derived = module.space.derived_latency(cb.table)
    for target, zero in ((derived + 1.0, True), (derived - 1.0, False)):
        gated = LatencyRegularization(table_path, weight=0.25, target_ms=target)
        gated.setup(None, module, "fit")
        value = float(gated.arch_loss(module, None, None).detach())
        assert (value == 0.0) is zero


# ----------------------------------------------------------------------------- training
def test_search_with_the_term_gets_faster_and_logs(tmp_path, synthetic_root, table_path):
    final = {}
    for weight in (0.0, 1.0):
        module = SearchModule(
            tiny_space(),
            arch_optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}},
        )
        cb = LatencyRegularization(table_path, weight=weight)
        t = trainer(tmp_path / str(weight), [cb], max_epochs=1, limit_train_batches=2)
        t.fit(module, data(synthetic_root))
        final[weight] = module.space.expected_latency(cb.table).detach().item()
    m = t.callback_metrics
    for key in (
        "train/arch_loss/LatencyRegularization",
        "latency/expected_ms",
        "latency/derived_ms",
        "latency/lambda",
        "latency/unit_ms",
        "latency/term_ratio",
    ):
        assert key in m, key
    assert float(m["latency/lambda"]) == 1.0
    ratio = m["train/arch_loss/LatencyRegularization"] / m["train/arch_loss/task"]
    assert float(m["latency/term_ratio"]) == pytest.approx(float(ratio), rel=1e-5)
    assert final[1.0] < final[0.0]


def test_adaptive_lambda_is_checkpointed_and_resumed(tmp_path, synthetic_root, table_path):
    # the fake network runs at ~2 FPS: below min_fps, λ doubles at every epoch end
    def run(epochs, ckpt_path=None):
        cb = LatencyRegularization(table_path, weight=0.01, fps_window=(1000.0, 2000.0))
        t = trainer(tmp_path, [cb], max_epochs=epochs, limit_train_batches=1)
        t.fit(SearchModule(tiny_space()), data(synthetic_root), ckpt_path=ckpt_path)
        return cb, t

    cb, t = run(1)
    assert cb.weight == pytest.approx(0.02)
    last = tmp_path / "last.ckpt"
    t.save_checkpoint(last)
    state = torch.load(last, weights_only=False)["callbacks"]
    assert {"weight": pytest.approx(0.02)} in list(state.values())
    resumed, _ = run(2, ckpt_path=str(last))
    assert resumed.weight == pytest.approx(0.04)  # restored 0.02, doubled once more

    fresh = LatencyRegularization(table_path, weight=0.01)
    fresh.load_state_dict(cb.state_dict())
    assert fresh.weight == cb.weight


def test_configured_from_the_command_line(tmp_path, synthetic_root, table_path):
    from lightning_nas.cli import NASCLI

    cli = NASCLI(
        args=[
            "fit",
            "-c",
            "experiments/darts.yaml",
            "--trainer.fast_dev_run=true",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--model.init_args.space.init_args.C=4",
            "--model.init_args.space.init_args.layers=3",
            "--model.init_args.space.init_args.steps=2",
            "--model.init_args.space.init_args.multiplier=2",
            "--model.init_args.space.init_args.stem_multiplier=2",
            f"--data.init_args.root={synthetic_root}",
            "--data.init_args.num_train=16",
            "--data.init_args.num_val=8",
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=4",
            "--trainer.callbacks+=callbacks.latency_regularization.LatencyRegularization",
            f"--trainer.callbacks.table={table_path}",
            "--trainer.callbacks.fps_window=[155, 175]",
            "--trainer.callbacks.component_weights={operators: 1.0}",
        ]
    )
    (cb,) = [c for c in cli.trainer.callbacks if isinstance(c, LatencyRegularization)]
    assert cb.fps_window == (155.0, 175.0) and cb.component_weights == {"operators": 1.0}
    assert "train/arch_loss/LatencyRegularization" in cli.trainer.callback_metrics
