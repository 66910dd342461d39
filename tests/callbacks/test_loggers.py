"""Architecture logging through the generic logger API (CSV) and WandbLogger offline."""

import csv
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from callbacks.architecture_logger import mean_entropy
from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import SearchModule
from lightning_nas.spaces import DartsSpace


def tiny_module():
    torch.manual_seed(0)
    return SearchModule(DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2))


def tiny_data(root):
    return SyntheticDataModule(
        root=root, num_train=16, num_val=8, image_size=32, search=True, batch_size=4
    )


def test_mean_entropy_bounds():
    assert mean_entropy(torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.0, abs=1e-9)
    assert mean_entropy(torch.full((2, 8), 1 / 8)) == pytest.approx(math.log(8))


def test_arch_weights_entropy_and_skip_count_logged_each_epoch(tmp_path, synthetic_root):
    module = tiny_module()
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        accelerator="cpu",
        logger=CSVLogger(tmp_path),
        enable_progress_bar=False,
    )
    trainer.fit(module, tiny_data(synthetic_root))
    rows = list(csv.DictReader(open(tmp_path / "lightning_logs/version_0/metrics.csv")))
    epoch_rows = [r for r in rows if r.get("arch/alphas_normal/entropy")]
    assert len(epoch_rows) == 2
    last = epoch_rows[-1]
    probs = module.space.arch_distributions()["alphas_normal"]
    assert float(last["arch/alphas_normal/entropy"]) == pytest.approx(mean_entropy(probs), rel=1e-5)
    assert float(last["arch/alphas_normal/0->2/sep_conv_3x3"]) == pytest.approx(
        float(probs[0, 4]), rel=1e-5
    )
    genotype = module.derive()
    assert float(last["arch/skip_connections_normal"]) == genotype.num_skip_connections("normal")
    pngs = sorted(p.name for p in tmp_path.rglob("arch/*.png"))
    heatmaps = [f"alphas_{c}_epoch={e:03d}.png" for c in ("normal", "reduce") for e in (0, 1)]
    assert pngs == heatmaps + [f"genotype_epoch={e:03d}.png" for e in (0, 1)]


def test_wandb_logger_offline(tmp_path, synthetic_root, monkeypatch):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="lightning_nas_test")
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        accelerator="cpu",
        logger=logger,
        enable_progress_bar=False,
    )
    trainer.fit(tiny_module(), tiny_data(synthetic_root))
    import wandb

    wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))
    media = list(runs[0].rglob("*.png"))
    assert media, "the architecture heatmaps were not sent to wandb"
