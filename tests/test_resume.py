"""--ckpt_path continues a search bit-exactly: stop after epoch 1 + resume == uninterrupted run."""

import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import MID_EPOCH_KEY, SearchModule
from lightning_nas.spaces import DartsSpace, FasterSegSpace


def make_module(seed, unrolled=False, space="darts"):
    torch.manual_seed(seed)
    if space == "fasterseg":  # sampled widths: the sample counter comes from the checkpoint
        space = FasterSegSpace(num_classes=6, layers=8, Fch=1, widths=(6, 12))
    else:
        space = DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2, stem_multiplier=2)
    sched = {
        "class_path": "torch.optim.lr_scheduler.CosineAnnealingLR",
        "init_args": {"T_max": 2, "eta_min": 0.001},
    }
    return SearchModule(space, weight_lr_scheduler=sched, unrolled=unrolled, epoch_seed=7)


def fit(module, root, out, max_epochs, num_workers, ckpt_path=None, checkpoint=None):
    data = SyntheticDataModule(
        root=root,
        num_train=16,
        num_val=8,
        image_size=32,
        search=True,
        batch_size=4,
        num_workers=num_workers,
        scale_range=(0.75, 1.25),
    )
    trainer = pl.Trainer(
        default_root_dir=out,
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint or ModelCheckpoint(dirpath=out / "ckpt", save_last=True)],
    )
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize(
    "num_workers,unrolled,space",
    [(0, False, "darts"), (2, False, "darts"), (0, True, "darts"), (0, False, "fasterseg")],
    ids=["workers0", "workers2", "second_order", "fasterseg"],
)
def test_resume_is_bit_identical(tmp_path, synthetic_root, num_workers, unrolled, space):
    full = make_module(0, unrolled, space)
    fit(full, synthetic_root, tmp_path / "full", 2, num_workers)

    first = make_module(0, unrolled, space)
    fit(first, synthetic_root, tmp_path / "part", 1, num_workers)
    after_epoch1 = {k: v.detach().clone() for k, v in first.arch_parameters().items()}
    # different init: everything must come from the ckpt
    resumed = make_module(123, unrolled, space)
    trainer = fit(
        resumed,
        synthetic_root,
        tmp_path / "part",
        2,
        num_workers,
        ckpt_path=str(tmp_path / "part" / "ckpt" / "last.ckpt"),
    )

    assert trainer.current_epoch == 2
    for name, value in full.arch_parameters().items():
        assert not torch.equal(value, after_epoch1[name])  # epoch 2 did move them
        assert torch.equal(resumed.arch_parameters()[name], value), name
    for a, b in zip(full.weight_parameters(), resumed.weight_parameters()):
        assert torch.equal(a, b)
    lr_full = full.optimizers()[0].param_groups[0]["lr"]
    assert resumed.optimizers()[0].param_groups[0]["lr"] == lr_full


MID_EPOCH_WARNING = "saved in the middle of an epoch"


@pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")
def test_only_a_mid_epoch_checkpoint_warns_on_resume(tmp_path, synthetic_root):
    # 16 scenes -> halves of 8 -> 2 batches of 4 per epoch; each search batch makes 2 optimizer
    # steps, so every_n_train_steps=2 saves after batch 1 (mid-epoch) and batch 2 (the last one);
    # the default ModelCheckpoint saves last.ckpt at the epoch-end validation.
    every = ModelCheckpoint(dirpath=tmp_path / "every", every_n_train_steps=2, save_top_k=-1)
    fit(make_module(0), synthetic_root, tmp_path / "a", 1, 0, checkpoint=every)
    fit(make_module(0), synthetic_root, tmp_path / "b", 1, 0)
    mid = tmp_path / "every" / "epoch=0-step=2.ckpt"
    last_batch = tmp_path / "every" / "epoch=0-step=4.ckpt"
    epoch_end = tmp_path / "b" / "ckpt" / "last.ckpt"

    def saved_mid_epoch(path):
        return torch.load(path, map_location="cpu", weights_only=False)[MID_EPOCH_KEY]

    assert saved_mid_epoch(mid) is True
    assert saved_mid_epoch(last_batch) is False
    assert saved_mid_epoch(epoch_end) is False

    def resume_warnings(path, out):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(make_module(1), synthetic_root, out, 2, 0, ckpt_path=str(path))
        return [w for w in caught if MID_EPOCH_WARNING in str(w.message)]

    assert len(resume_warnings(mid, tmp_path / "r1")) == 1
    assert resume_warnings(last_batch, tmp_path / "r2") == []
    assert resume_warnings(epoch_end, tmp_path / "r3") == []
    # a module loaded from a mid-epoch checkpoint and trained afresh (no ckpt_path) does not warn
    module = SearchModule.load_from_checkpoint(mid, space=make_module(1).space)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(module, synthetic_root, tmp_path / "r4", 1, 0)
    assert not [w for w in caught if MID_EPOCH_WARNING in str(w.message)]
