"""SegmentationModule: lr schedules, loss terms from callbacks, metric."""

import math

import lightning.pytorch as pl
import pytest
import torch
import yaml

from lightning_nas import build_network
from lightning_nas.data import SyntheticDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.loss_terms import LossTerm
from lightning_nas.schedules import CosineLR, PolyLR
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


# --- lr schedules --------------------------------------------------------------------------

LR0 = 0.05  # the default optimizer's lr
STEPS = 2 * 4  # 2 epochs of 16 scenes in batches of 4


class LrRecorder(pl.Callback):
    """The lr each training step runs with."""

    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def lrs_of(module, synthetic_root, tmp_path):
    recorder = LrRecorder()
    data = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, batch_size=4
    )
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[recorder],
    )
    trainer.fit(module, data)
    assert len(recorder.lrs) == STEPS
    return recorder.lrs, trainer


def tiny_module(**kwargs):
    return SegmentationModule(torch.nn.Conv2d(3, 6, 1), num_classes=6, **kwargs)


def test_default_lr_schedule_is_poly_09_over_all_training_steps(synthetic_root, tmp_path):
    lrs, trainer = lrs_of(tiny_module(), synthetic_root, tmp_path)
    oracle = [LR0 * (1 - t / STEPS) ** 0.9 for t in range(STEPS)]  # DeepLab's poly, by hand
    assert lrs == pytest.approx(oracle, rel=1e-12, abs=1e-15)
    config = trainer.lr_scheduler_configs[0]
    assert isinstance(config.scheduler, PolyLR) and config.interval == "step"
    assert config.scheduler.total_iters == STEPS
    # exactly what the module built before lr_scheduler existed (lr_schedule: poly, lr_power: 0.9)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR0)
    before = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=STEPS, power=0.9)
    previous = []
    for _ in range(STEPS):
        previous.append(opt.param_groups[0]["lr"])
        opt.step()
        before.step()
    assert lrs == previous


@pytest.mark.parametrize(
    "overlay,expected",
    [
        ("", PolyLR),
        ("lr_scheduler: {class_path: lightning_nas.schedules.CosineLR}", CosineLR),
        ("lr_scheduler: null", None),
    ],
    ids=["yaml_default_poly", "cosine", "constant"],
)
def test_retrain_yaml_lr_scheduler(tmp_path, synthetic_root, overlay, expected):
    from lightning_nas.cli import NASCLI

    config = tmp_path / "overlay.yaml"
    config.write_text(f"model:\n  init_args:\n    {overlay or 'ignore_index: 255'}\n")
    cli = NASCLI(
        args=[
            "fit",
            "-c",
            "experiments/retrain_darts.yaml",
            "-c",
            str(config),
            "--model.init_args.network.init_args.C=4",
            "--model.init_args.network.init_args.layers=3",
            f"--data.init_args.root={synthetic_root}",
            "--data.init_args.num_train=16",
            "--data.init_args.num_val=8",
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=4",
            "--trainer.max_epochs=1",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    configs = cli.trainer.lr_scheduler_configs
    if expected is None:
        assert configs == []
        assert cli.model.optimizers().param_groups[0]["lr"] == LR0
        return
    assert type(configs[0].scheduler) is expected and configs[0].interval == "step"
    assert configs[0].scheduler.total_iters == 4  # all the training steps: 16 / 4
    assert cli.model.optimizers().param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_cosine_and_constant_schedules_from_yaml_specs(synthetic_root, tmp_path):
    cosine = yaml.safe_load("class_path: lightning_nas.schedules.CosineLR")
    lrs, trainer = lrs_of(tiny_module(lr_scheduler=cosine), synthetic_root, tmp_path)
    oracle = [LR0 * (1 + math.cos(math.pi * t / STEPS)) / 2 for t in range(STEPS)]
    assert lrs == pytest.approx(oracle, rel=1e-12, abs=1e-15)
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, CosineLR)
    torch_constant = yaml.safe_load(
        "{class_path: torch.optim.lr_scheduler.ConstantLR, init_args: {factor: 1.0}}"
    )
    for spec in (None, torch_constant):
        lrs, _ = lrs_of(tiny_module(lr_scheduler=spec), synthetic_root, tmp_path)
        assert lrs == [LR0] * STEPS


POLY_05 = {"class_path": "lightning_nas.schedules.PolyLR", "init_args": {"power": 0.5}}
COSINE = {"class_path": "lightning_nas.schedules.CosineLR"}


@pytest.mark.parametrize(
    "old,new",
    [
        ({"lr_schedule": "poly", "lr_power": 0.9}, {}),
        ({"lr_power": 0.5}, {"lr_scheduler": POLY_05}),
        ({"lr_schedule": "cosine"}, {"lr_scheduler": COSINE}),
        ({"lr_schedule": "constant"}, {"lr_scheduler": None}),
    ],
    ids=["poly", "power", "cosine", "constant"],
)
def test_deprecated_lr_schedule_keys_give_the_same_lrs(synthetic_root, tmp_path, old, new):
    with pytest.warns(DeprecationWarning, match="model.lr_scheduler"):
        module = tiny_module(**old)
    lrs, _ = lrs_of(module, synthetic_root, tmp_path / "old")
    expected, _ = lrs_of(tiny_module(**new), synthetic_root, tmp_path / "new")
    assert lrs == expected


def test_deprecated_and_new_schedule_keys_together_are_an_error():
    with pytest.raises(ConfigError, match=r"lr_schedule='poly'.*lr_scheduler") as info:
        tiny_module(lr_schedule="poly", lr_scheduler=COSINE)
    assert "PolyLR" in str(info.value)  # says what is expected instead
    with pytest.raises(ConfigError, match=r"lr_power=0.5.*lr_scheduler"):
        tiny_module(lr_power=0.5, lr_scheduler=None)
    with pytest.raises(ConfigError, match="expected poly, cosine or constant, got 'step'"):
        tiny_module(lr_schedule="step")


def test_old_retrain_checkpoint_keeps_its_poly_schedule(synthetic_root, tmp_path):
    path = "tests/fixtures/pre_move/darts_retrain.ckpt"
    saved = torch.load(path, map_location="cpu", weights_only=False)["hyper_parameters"]
    assert (saved["lr_schedule"], saved["lr_power"]) == ("poly", 0.9)
    with pytest.warns(DeprecationWarning, match="lr_scheduler"):
        module = SegmentationModule.load_from_checkpoint(path, map_location="cpu")
    lrs, trainer = lrs_of(module, synthetic_root, tmp_path)
    assert lrs == pytest.approx([LR0 * (1 - t / STEPS) ** 0.9 for t in range(STEPS)], rel=1e-12)
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, PolyLR)
