"""CachedFeatureDataModule and ProxySegmentationModule: batches, training, loss and metric."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from lightning_nas.data import SyntheticDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.proxy import (
    CachedFeatureDataModule,
    ProxySegmentationModule,
    smp_encoder_feature,
)

CHANNELS = 320  # tu-mobilenetv2_100's last feature


def make_data(synthetic_root, cache_root, **source_kwargs):
    torch.manual_seed(0)
    encoder = smp_encoder_feature("tu-mobilenetv2_100", output_stride=8)
    calls = []
    encoder.register_forward_hook(lambda *args: calls.append(1))
    source = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, batch_size=4, **source_kwargs
    )
    dm = CachedFeatureDataModule(
        source, encoder, str(cache_root), eval_batch_size=8, progress=False
    )
    return dm, calls


def make_trainer(max_epochs=2, callbacks=()):
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def make_module(**kwargs):
    torch.manual_seed(0)
    return ProxySegmentationModule(nn.Conv2d(CHANNELS, 6, kernel_size=1), num_classes=6, **kwargs)


def test_datamodule_yields_features_and_full_size_masks(synthetic_root, tmp_path):
    dm, calls = make_data(synthetic_root, tmp_path)
    assert dm.num_classes == 6 and dm.feature_channels == CHANNELS
    dm.prepare_data()
    assert len(calls) == 3  # train: 16 images in batches of 8; val: 8
    assert len(list(tmp_path.iterdir())) == 2
    dm.prepare_data()
    assert len(calls) == 3  # reused
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, CHANNELS, 4, 4) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 32, 32) and batch["mask"].dtype == torch.int64
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (8, CHANNELS, 4, 4) and val["mask"].shape == (8, 32, 32)
    assert len(dm.train_dataloader()) == 4


def test_setup_without_a_cache_raises(synthetic_root, tmp_path):
    dm, _ = make_data(synthetic_root, tmp_path)
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        dm.setup("fit")


def test_search_mode_splits_the_cached_training_set(synthetic_root, tmp_path):
    dm, _ = make_data(synthetic_root, tmp_path, search=True)
    dm.prepare_data()
    dm.setup("fit")
    loaders = dm.train_dataloader()
    assert set(loaders) == {"weights", "arch"}
    assert len(loaders["weights"].dataset) == len(loaders["arch"].dataset) == 8


def test_proxy_module_trains_on_cached_features(synthetic_root, tmp_path):
    dm, _ = make_data(synthetic_root, tmp_path)
    module = make_module()
    trainer = make_trainer(max_epochs=2)
    trainer.fit(module, dm)
    assert trainer.current_epoch == 2 and trainer.global_step == 8
    miou = trainer.callback_metrics["val/mIoU"]
    assert 0.0 <= float(miou) <= 1.0
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


class RecordLoss(pl.Callback):
    """The loss of the first training step and a hand computation of it, before the update."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch

    def on_before_backward(self, trainer, pl_module, loss):
        if hasattr(self, "loss"):
            return
        with torch.no_grad():
            features, mask = self.batch["image"], self.batch["mask"]
            logits = pl_module.network(features)
            assert logits.shape[-2:] == (4, 4)
            logits = F.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
            self.expected = F.cross_entropy(logits, mask, ignore_index=255)
        self.loss = loss.detach()


def test_loss_is_cross_entropy_of_upsampled_logits(synthetic_root, tmp_path):
    dm, _ = make_data(synthetic_root, tmp_path)
    module = make_module()
    record = RecordLoss()
    make_trainer(max_epochs=1, callbacks=[record]).fit(module, dm)
    torch.testing.assert_close(record.loss, record.expected)

    (batch,) = list(dm.val_dataloader())  # one val batch of 8
    with torch.no_grad():
        logits = F.interpolate(
            module.network(batch["image"]), size=(32, 32), mode="bilinear", align_corners=False
        )
        loss = F.cross_entropy(logits, batch["mask"], ignore_index=255)
        metric = MulticlassJaccardIndex(num_classes=6, ignore_index=255, average="macro")
        miou = metric(logits.argmax(1), batch["mask"])
    (logged,) = make_trainer().validate(module, dm, verbose=False)
    assert logged["val/loss"] == pytest.approx(float(loss), rel=1e-5)
    assert logged["val/mIoU"] == pytest.approx(float(miou), rel=1e-5)


def test_image_space_evaluation_options_are_rejected(synthetic_root, tmp_path):
    dm, _ = make_data(synthetic_root, tmp_path)
    with pytest.raises(ConfigError, match="eval_flip"):
        make_trainer().validate(make_module(eval_flip=True), dm, verbose=False)


def test_config_mappings_and_channels_of_any_encoder(synthetic_root, tmp_path):
    spec = {
        "class_path": "lightning_nas.data.SyntheticDataModule",
        "init_args": {"root": synthetic_root, "num_train": 16, "num_val": 8, "image_size": 32},
    }
    encoder = nn.Sequential(nn.Conv2d(3, 5, kernel_size=8, stride=8))
    dm = CachedFeatureDataModule(spec, encoder, str(tmp_path), progress=False)
    assert isinstance(dm.source, SyntheticDataModule)
    assert dm.feature_channels == 5 and encoder.training  # one blank forward pass
    with pytest.raises(ConfigError, match="source: expected a SegmentationDataModule"):
        CachedFeatureDataModule({"class_path": "torch.nn.Identity"}, encoder, str(tmp_path))
