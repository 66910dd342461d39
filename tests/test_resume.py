"""--ckpt_path continues a search bit-exactly from any checkpoint, at an epoch end or mid-epoch.

In process: one run saves a checkpoint after every batch; runs resumed from some of them (with
another initialisation, so everything must come from the checkpoint) end with the same
architecture parameters, weights and learning rate. A real ``lightning fit`` killed with SIGKILL
at a random step and rerun with ``--ckpt_path last`` ends bit-identical to an uninterrupted one.
"""

import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from lightning_nas.data import SyntheticDataModule
from lightning_nas.resume import CHECKPOINT_KEY, MID_EPOCH_KEY, capture_rng, restore_rng
from lightning_nas.search import SearchModule
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


def data(root, num_workers, cls=SyntheticDataModule):
    return cls(
        root=root,
        num_train=16,
        num_val=8,
        image_size=32,
        search=True,
        batch_size=2,
        num_workers=num_workers,
        scale_range=(0.75, 1.25),
    )


def fit(module, datamodule, out, max_epochs, ckpt_path=None, callbacks=()):
    trainer = pl.Trainer(
        default_root_dir=out,
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=out / "ckpt", save_last=True), *callbacks],
    )
    trainer.fit(module, datamodule, ckpt_path=ckpt_path)
    return trainer


def every_two_batches(out):
    # each search batch makes two optimizer steps (architecture, weights)
    return ModelCheckpoint(dirpath=out / "every", every_n_train_steps=4, save_top_k=-1)


def assert_same_state(a, b):
    for name, value in a.arch_parameters().items():
        assert torch.equal(b.arch_parameters()[name], value), name
    for (name, x), y in zip(a.space.state_dict().items(), b.space.state_dict().values()):
        assert torch.equal(x, y), name  # weights and BatchNorm statistics
    assert b.optimizers()[0].param_groups[0]["lr"] == a.optimizers()[0].param_groups[0]["lr"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")
@pytest.mark.parametrize(
    "num_workers,unrolled,space,epoch_end",
    [
        (0, False, "darts", True),
        (2, False, "darts", False),  # workers: only the data differ, mid-epoch is the hard case
        (0, True, "darts", True),
        (0, False, "fasterseg", False),  # sampled widths: the generators, mid-epoch
    ],
    ids=["workers0", "workers2", "second_order", "fasterseg"],
)
def test_resume_is_bit_identical_at_epoch_ends_and_mid_epoch(
    tmp_path, synthetic_root, num_workers, unrolled, space, epoch_end
):
    # 16 scenes -> halves of 8 -> 4 batches of 2 per epoch; 2 epochs (the mid-epoch checkpoint
    # in epoch 1), or 1 when only the mid-epoch case is tested (the checkpoint in epoch 0)
    epochs = 2 if epoch_end else 1
    full = make_module(0, unrolled, space)
    fit(
        full,
        data(synthetic_root, num_workers),
        tmp_path / "full",
        epochs,
        callbacks=[every_two_batches(tmp_path)],
    )
    saved = tmp_path / "every"
    last_batch = saved / "epoch=0-step=8.ckpt"  # after the last batch of epoch 0
    mid_epoch = saved / ("epoch=1-step=12.ckpt" if epoch_end else "epoch=0-step=4.ckpt")
    flags = {
        p.name: torch.load(p, map_location="cpu", weights_only=True)[MID_EPOCH_KEY]
        for p in (last_batch, mid_epoch)
    }
    assert flags == {last_batch.name: False, mid_epoch.name: True}
    for ckpt in (last_batch, mid_epoch) if epoch_end else (mid_epoch,):
        resumed = make_module(123, unrolled, space)  # another init: all must come from the ckpt
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = fit(
                resumed, data(synthetic_root, num_workers), tmp_path / ckpt.stem, epochs, str(ckpt)
            )
        assert not [w for w in caught if "bit-identical" in str(w.message)]
        assert trainer.current_epoch == epochs
        assert_same_state(full, resumed)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_resumes_mid_epoch_with_the_same_batches(synthetic_root, num_workers):
    dm = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, batch_size=2,
        num_workers=num_workers, scale_range=(0.75, 1.25),
    )  # fmt: skip
    dm.setup("fit")
    torch.manual_seed(3)
    loader = dm.train_dataloader()
    batches = iter(loader)
    first = [next(batches) for _ in range(3)]
    state, rng = loader.state_dict(), capture_rng()
    rest = list(batches)
    assert state["yielded"] == 3 and len(first) + len(rest) == len(loader) == 8
    assert loader.state_dict() == {}  # a finished epoch is no position

    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    torch.manual_seed(12345)  # whatever the generator did since: the checkpoint restores it
    restore_rng(rng)
    again = list(resumed)
    assert [b["name"] for b in again] == [b["name"] for b in rest]
    for a, b in zip(again, rest):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert len(list(resumed)) == 8  # the next epoch starts from its beginning

    if num_workers == 0:  # the uninterrupted stream is torch's own DataLoader's
        torch.manual_seed(3)
        plain = DataLoader(loader.dataset, batch_size=2, shuffle=True, drop_last=True)
        for a, b in zip(plain, [*first, *rest]):
            assert a["name"] == b["name"] and torch.equal(a["image"], b["image"])


@pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")
def test_mid_epoch_resume_with_a_plain_loader_warns(tmp_path, synthetic_root):
    class PlainLoaders(SyntheticDataModule):
        def train_dataloader(self):
            return {
                name: DataLoader(loader.dataset, batch_size=2, shuffle=True, drop_last=True)
                for name, loader in super().train_dataloader().items()
            }

    plain = data(synthetic_root, 0, PlainLoaders)
    fit(make_module(0), plain, tmp_path / "a", 1, callbacks=[every_two_batches(tmp_path)])
    mid = tmp_path / "every" / "epoch=0-step=4.ckpt"
    checkpoint = torch.load(mid, map_location="cpu", weights_only=True)
    assert checkpoint[MID_EPOCH_KEY] is True
    assert checkpoint[CHECKPOINT_KEY]["loaders"] == [{}, {}]  # plain loaders have no position
    with pytest.warns(UserWarning, match="not bit-identically.*training loader \\(DataLoader"):
        fit(make_module(0), data(synthetic_root, 0, PlainLoaders), tmp_path / "b", 1, str(mid))
