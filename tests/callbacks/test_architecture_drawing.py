"""ArchitectureLogger: the derived genotype drawn each epoch; the uniform warning at fit end."""

import logging
import warnings
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from callbacks import ArchitectureLogger
from lightning_nas.data import SyntheticDataModule
from lightning_nas.genotypes import DartsGenotype
from lightning_nas.search import SearchModule
from lightning_nas.spaces import DartsSpace

RANDOM_DRAW = (
    "the derived architecture is a random draw: search longer or raise the architecture "
    "learning rate"
)


def tiny_space():
    torch.manual_seed(0)
    return DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2)


def test_search_draws_the_genotype_and_warns_when_alphas_stay_uniform(
    tmp_path, synthetic_root, caplog
):
    frozen = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.0}}  # alphas stay at init
    module = SearchModule(tiny_space(), arch_optimizer=frozen)
    logger = ArchitectureLogger(log_weights=False)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        callbacks=[logger],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    data = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, search=True, batch_size=8
    )
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match=RANDOM_DRAW) as rec:
        trainer.fit(module, data)
    drawing = next(tmp_path.rglob("arch/genotype_epoch=000.png"))
    Image.open(drawing).verify()
    assert Image.open(drawing).size[0] > 0
    message = next(str(w.message) for w in rec if RANDOM_DRAW in str(w.message))
    assert "alphas_normal 1.0000" in message  # the measured ratio
    assert any(RANDOM_DRAW in r.getMessage() for r in caplog.records)

    # the same callback stays quiet once the architecture weights have chosen
    with torch.no_grad():
        for alphas in module.space.arch_parameters().values():
            alphas.zero_()
            alphas[:, 0] = 20.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.on_fit_end(trainer, module)
    assert not [w for w in caught if RANDOM_DRAW in str(w.message)]


def test_drawing_is_skipped_without_a_drawing_and_fails_with_one_warning(tmp_path, monkeypatch):
    logger, space = ArchitectureLogger(), tiny_space()
    trainer = SimpleNamespace(current_epoch=3, loggers=[])
    monkeypatch.setattr(DartsGenotype, "drawing", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger._draw_genotype(trainer, tmp_path, space)
    assert not caught and not list(tmp_path.iterdir())

    monkeypatch.setattr(DartsGenotype, "drawing", "lightning_nas.no_such_module.draw")
    with pytest.warns(UserWarning, match="could not draw the derived genotype") as rec:
        logger._draw_genotype(trainer, tmp_path, space)
        logger._draw_genotype(trainer, tmp_path, space)
    assert len([w for w in rec if "could not draw" in str(w.message)]) == 1
    assert not list(tmp_path.iterdir())

    monkeypatch.undo()
    logger._draw_genotype(trainer, tmp_path, space)
    assert [p.name for p in tmp_path.iterdir()] == ["genotype_epoch=003.png"]
