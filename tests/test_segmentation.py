"""SegmentationModule: poly schedule, loss terms from callbacks, metric."""

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas import build_network
from lightning_nas.data import SyntheticDataModule
from lightning_nas.loss_terms import LossTerm
from lightning_nas.segmentation import SegmentationModule


class HalfLogitNorm(LossTerm):
    def weight_loss(self, module, logits, batch):
        return 0.5 * logits.pow(2).mean()


def make(synthetic_root, tmp_path, callbacks=(), max_epochs=1):
    torch.manual_seed(0)
    net = build_network("experiments/genotypes/darts_v2.yaml", num_classes=6, C=4, layers=3)
    module = SegmentationModule(net)
    data = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, batch_size=4
    )
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(module, data)
    return module, trainer


def test_poly_lr_reaches_zero_at_the_last_step(synthetic_root, tmp_path):
    module, trainer = make(synthetic_root, tmp_path, max_epochs=2)
    steps = trainer.global_step
    assert steps == 2 * 4
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == steps
    assert module.optimizers().param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_loss_terms_are_added_in_retraining(synthetic_root, tmp_path):
    _, trainer = make(synthetic_root, tmp_path, callbacks=[HalfLogitNorm()])
    m = trainer.callback_metrics
    assert float(m["train/loss"]) == pytest.approx(
        float(m["train/loss/task"]) + float(m["train/loss/HalfLogitNorm"]), rel=1e-5
    )
    assert float(m["train/loss/HalfLogitNorm"]) > 0
    assert 0.0 <= float(m["val/mIoU"]) <= 1.0


def test_whole_image_evaluation_options(synthetic_root, tmp_path):
    torch.manual_seed(0)
    net = build_network("experiments/genotypes/darts_v2.yaml", num_classes=6, C=4, layers=3)
    plain = SegmentationModule(net).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        base = plain.eval_logits(image)
        flipped = SegmentationModule(net, eval_flip=True).eval().eval_logits(image)
        windowed = SegmentationModule(net, eval_window=16).eval().eval_logits(image)
        expected_flip = (base + plain(image.flip(-1)).flip(-1)) / 2
    torch.testing.assert_close(flipped, expected_flip, rtol=1e-5, atol=1e-5)
    assert windowed.shape == base.shape and not torch.allclose(windowed, base)
    with pytest.raises(ValueError, match="eval_scales"):
        SegmentationModule(net, eval_scales=())


def test_aux_weights_add_the_auxiliary_heads_losses() -> None:
    import torch.nn.functional as F

    from lightning_nas.errors import ConfigError

    torch.manual_seed(0)
    net = build_network("experiments/genotypes/fasterseg_cityscapes.yaml", num_classes=6, Fch=2)
    module = SegmentationModule(net, aux_weights=(0.2, 0.5))
    batch = {"image": torch.randn(2, 3, 64, 64), "mask": torch.randint(0, 6, (2, 64, 64))}
    torch.manual_seed(1)
    logits, aux = module._aux_loss(batch)
    main, a16, a32 = net.forward_aux(batch["image"])
    assert torch.allclose(logits, main, atol=1e-6)  # BN in train mode: same batch, same stats
    expected = 0.2 * F.cross_entropy(a16, batch["mask"]) + 0.5 * F.cross_entropy(a32, batch["mask"])
    assert float(aux) == pytest.approx(float(expected), rel=1e-5)
    assert module._aux_loss(batch)[1] is not None
    assert SegmentationModule(net)._aux_loss(batch)[1] is None
    dart = build_network("experiments/genotypes/darts_v2.yaml", num_classes=6, C=4, layers=3)
    with pytest.raises(ConfigError, match="forward_aux"):
        SegmentationModule(dart, aux_weights=(0.2,))
    # a weight without its output is an error, not silently dropped
    with pytest.raises(ConfigError, match="3 weights"):
        SegmentationModule(net, aux_weights=(0.2, 0.2, 0.2))._aux_loss(batch)
    bare = build_network(
        "experiments/genotypes/fasterseg_cityscapes.yaml", num_classes=6, Fch=2, aux_heads=False
    )
    with pytest.raises(ConfigError, match=r"aux_weights\[0\]"):
        SegmentationModule(bare, aux_weights=(0.2, 0.2))._aux_loss(batch)
