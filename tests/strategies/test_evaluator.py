"""LightningEvaluator: a real fit of a genotype's network, its objectives, Optuna's pruning hook."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from lightning_nas import genotypes
from lightning_nas.data import SyntheticDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.strategies import LightningEvaluator

GENOTYPE = Path(__file__).resolve().parents[2] / "experiments/genotypes/darts_v2.yaml"


def evaluator(root, **kwargs) -> LightningEvaluator:
    data = SyntheticDataModule(root=root, num_train=16, num_val=8, image_size=32, batch_size=8)
    defaults = {
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1},
        "network_kwargs": {"C": 4, "layers": 3},
        "latency_input_size": (32, 32),
    }
    return LightningEvaluator(data, **{**defaults, **kwargs})


def test_objectives_and_the_pruning_callback_report_each_validation(synthetic_root, tmp_path):
    ev = evaluator(synthetic_root, objectives=["val/mIoU", "params", "latency_ms"], prune=True)
    assert ev.directions == ("maximize", "minimize", "minimize")
    study = optuna.create_study(directions=ev.directions)
    trial = study.ask()
    genotype = genotypes.load(GENOTYPE)
    miou, params, latency = ev(genotype, tmp_path / "run", trial)
    assert 0.0 <= miou <= 1.0 and latency > 0
    net = genotypes.build_network(genotype, 6, C=4, layers=3)
    assert params == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6)
    # multi-objective: no pruning callback (Optuna prunes single-objective studies only)
    assert study.trials[0].intermediate_values == {}
    single = optuna.create_study(direction="maximize")
    trial = single.ask()
    pruned = evaluator(synthetic_root, prune=True)
    (value,) = pruned(genotype, tmp_path / "run2", trial)
    reports = single.trials[0].intermediate_values
    assert sorted(reports) == [0, 1] and reports[1] == pytest.approx(value)
    assert (tmp_path / "run2" / "logs" / "metrics.csv").is_file()  # the trial's CSV log


def test_reserved_trainer_keys_and_missing_metrics_are_config_errors(synthetic_root, tmp_path):
    with pytest.raises(ConfigError, match="evaluator.trainer.logger: set by the evaluator"):
        evaluator(synthetic_root, trainer={"logger": False})
    ev = evaluator(synthetic_root, objectives=["val/nothing"])
    with pytest.raises(ConfigError, match="'val/nothing' was not logged"):
        ev(genotypes.load(GENOTYPE), tmp_path / "run")
