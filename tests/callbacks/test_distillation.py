"""Distillation: the KL term, the frozen teacher, loading, and its absence."""

import copy

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from callbacks.distillation import Distillation, distillation_kl
from lightning_nas import build_network
from lightning_nas.data import SyntheticDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.search import SearchModule
from lightning_nas.segmentation import SegmentationModule
from lightning_nas.spaces import DartsSpace

GENOTYPE = "experiments/genotypes/darts_v2.yaml"


def net(seed=0):
    torch.manual_seed(seed)
    return build_network(GENOTYPE, num_classes=6, C=4, layers=3)


def batch(seed=0, n=2, size=16):
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 6, (n, size, size), generator=g)
    mask[:, :4] = 255
    return {"image": torch.randn(n, 3, size, size, generator=g), "mask": mask}


def trainer(tmp_path, callbacks=()):
    return pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def data(root, search=False):
    return SyntheticDataModule(
        root=root, num_train=16, num_val=8, image_size=32, batch_size=4, search=search
    )


# ----------------------------------------------------------------------------- maths
def test_kl_matches_an_independent_reference():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g)
    for T in (1.0, 2.5):
        p_t = torch.softmax(t / T, 1)
        ref = (p_t * (p_t.log() - torch.log_softmax(s / T, 1))).sum(1).mean() * T * T
        got = distillation_kl(s, t, T, reduction="pixel")
        assert float(got) == pytest.approx(float(ref), rel=1e-5)
    valid = torch.zeros(2, 3, 4, dtype=torch.bool)
    valid[0, 1, 2] = valid[1, 0, 0] = True
    p_t = torch.softmax(t, 1)
    per_pixel = (p_t * (p_t.log() - torch.log_softmax(s, 1))).sum(1)
    assert float(distillation_kl(s, t, valid=valid, reduction="pixel")) == pytest.approx(
        float(per_pixel[valid].mean()), rel=1e-5
    )
    assert float(distillation_kl(s, t, valid=torch.zeros_like(valid))) == 0.0
    assert float(distillation_kl(s, s)) == 0.0
    with pytest.raises(ValueError, match="differ"):
        distillation_kl(s, t[:, :4])


def test_default_reduction_is_the_releases_kldivloss():
    """FasterSeg ``train/train.py``: ``nn.KLDivLoss()(F.softmax(s, 1).log(), F.softmax(t, 1))``."""
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 19, 5, 6, generator=g), torch.randn(2, 19, 5, 6, generator=g)
    release = torch.nn.KLDivLoss()(torch.softmax(s, 1).log(), torch.softmax(t, 1))
    assert float(distillation_kl(s, t)) == pytest.approx(float(release), rel=1e-5)
    # the per-pixel sum over classes is K = 19 times the release's term
    ratio = distillation_kl(s, t, reduction="pixel") / distillation_kl(s, t)
    assert float(ratio) == pytest.approx(19.0, rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        distillation_kl(s, t, reduction="sum")


def test_the_callback_defaults_to_the_release_over_every_pixel():
    module = SegmentationModule(net(0)).eval()
    teacher = net(1)
    b = batch()
    b["mask"][:, :4] = 255  # ignored labels still count in the release's KLDivLoss
    logits = module(b["image"])
    term = Distillation(teacher=teacher).weight_loss(module, logits, b)
    with torch.no_grad():
        t = teacher(b["image"])
    release = torch.nn.KLDivLoss()(torch.softmax(logits, 1).log(), torch.softmax(t, 1))
    assert float(term) == pytest.approx(float(release), rel=1e-5)
    per_pixel = Distillation(teacher=teacher, reduction="pixel").weight_loss(module, logits, b)
    assert float(per_pixel) == pytest.approx(float(term) * logits.shape[1], rel=1e-5)
    with pytest.raises(ConfigError, match="reduction"):
        Distillation(teacher=teacher, reduction="sum")


# ----------------------------------------------------------------------------- the term
def test_term_is_exactly_zero_when_the_teacher_is_the_student():
    module = SegmentationModule(net()).eval()  # eval: BatchNorm as the frozen teacher runs it
    cb = Distillation(teacher=copy.deepcopy(module.network))
    b = batch()
    term = cb.weight_loss(module, module(b["image"]), b)
    assert term.item() == 0.0


def test_term_is_positive_and_trains_the_student_only():
    module = SegmentationModule(net(0))
    teacher = net(1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cb = Distillation(teacher=teacher, weight=0.5, temperature=2.0)
    b = batch()
    term = cb.weight_loss(module, module(b["image"]), b)
    assert term.item() > 0
    term.backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


def test_phases_and_start_epoch():
    from types import SimpleNamespace

    teacher = net(1)
    b = batch()
    student = SegmentationModule(net(0))
    logits = student(b["image"])
    for phases, expect in ((("weight",), (True, False)), (("arch",), (False, True))):
        cb = Distillation(teacher=teacher, phases=phases)
        got = (cb.weight_loss(student, logits, b), cb.arch_loss(student, logits, b))
        assert tuple(t is not None for t in got) == expect
    # before start_epoch nothing; None follows the module's arch_start_epoch
    fake = SimpleNamespace(current_epoch=1, arch_start_epoch=2)
    assert Distillation(teacher=teacher, start_epoch=2).weight_loss(fake, logits, b) is None
    assert Distillation(teacher=teacher, start_epoch=None).weight_loss(fake, logits, b) is None
    fake.current_epoch = 2
    assert Distillation(teacher=teacher, start_epoch=None).weight_loss(fake, logits, b) > 0
    with pytest.raises(ConfigError, match="start_epoch"):
        Distillation(teacher=teacher, start_epoch=-1)
    with pytest.raises(ConfigError, match="phases"):
        Distillation(teacher=teacher, phases=("test",))


def test_ignored_pixels_are_excluded_or_kept():
    module = SegmentationModule(net(0)).eval()
    teacher = net(1)
    b = batch()
    logits = module(b["image"])
    all_ignored = {**b, "mask": torch.full_like(b["mask"], 255)}
    dropped = Distillation(teacher=teacher, ignore_index=255)
    assert dropped.weight_loss(module, logits, all_ignored).item() == 0.0
    kept = Distillation(teacher=teacher).weight_loss(module, logits, all_ignored)
    assert kept.item() > 0


def test_teacher_logits_are_resized_to_the_students():
    class HalfRes(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 6, x.shape[2] // 2, x.shape[3] // 2)

    module = SegmentationModule(net())
    b = batch()
    assert Distillation(teacher=HalfRes()).weight_loss(module, module(b["image"]), b).item() > 0


def test_teacher_is_called_once_per_batch_even_if_the_term_is_asked_again():
    calls = []

    class Counting(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            return torch.zeros(x.shape[0], 6, *x.shape[2:])

    module = SegmentationModule(net())
    cb = Distillation(teacher=Counting())
    b = batch()
    for _ in range(3):  # second-order search evaluates the weight loss several times
        cb.weight_loss(module, module(b["image"]), b)
    assert len(calls) == 1
    cb.on_train_batch_end(None, module, None, b, 0)
    cb.weight_loss(module, module(b["image"]), b)
    assert len(calls) == 2


# ----------------------------------------------------------------------------- in training
def test_absent_callback_adds_nothing_and_present_one_adds_its_term(tmp_path, synthetic_root):
    class Probe(pl.Callback):
        """Recompute plain CE on the batch the loss was computed on."""

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.batch = batch

        def on_before_backward(self, trainer, module, loss):
            with torch.no_grad():
                ce = F.cross_entropy(
                    module(self.batch["image"]), self.batch["mask"].long(), ignore_index=255
                )
            self.pairs = getattr(self, "pairs", []) + [(loss.item(), ce.item())]

    probe = Probe()
    module = SegmentationModule(net())
    trainer(tmp_path / "plain", [probe]).fit(module, data(synthetic_root))
    assert len(probe.pairs) == 2
    for loss, ce in probe.pairs:
        assert loss == pytest.approx(ce, rel=1e-6, abs=1e-7)

    t = trainer(tmp_path / "distil", [Distillation(teacher=net(1))])
    t.fit(SegmentationModule(net()), data(synthetic_root))
    m = t.callback_metrics
    assert float(m["train/loss/Distillation"]) > 0
    assert float(m["train/loss"]) == pytest.approx(
        float(m["train/loss/task"]) + float(m["train/loss/Distillation"]), rel=1e-5
    )


def test_teacher_from_checkpoint_and_from_weights_file(tmp_path, synthetic_root):
    t = trainer(tmp_path / "teacher")
    teacher_module = SegmentationModule(net(1))
    t.fit(teacher_module, data(synthetic_root))
    ckpt = tmp_path / "teacher.ckpt"
    t.save_checkpoint(ckpt)
    weights = tmp_path / "teacher.pt"
    torch.save(teacher_module.network.state_dict(), weights)
    b = batch()
    with torch.no_grad():
        expected = teacher_module.eval()(b["image"])

    student = SegmentationModule(net(0))
    loaded = []
    for cb in (
        Distillation(teacher_checkpoint=str(ckpt), teacher=net(2)),  # Python-made checkpoint
        Distillation(teacher=net(2), teacher_weights=str(weights)),
        Distillation(teacher=net(2), teacher_weights=str(ckpt)),  # a module checkpoint works too
    ):
        cb.setup(None, student, "fit")
        loaded.append(cb.teacher_logits(student, b["image"]))
        assert not cb.teacher.training
        assert all(not p.requires_grad for p in cb.teacher.parameters())
    for logits in loaded:
        torch.testing.assert_close(logits, expected)

    with pytest.raises(ConfigError, match="not found"):
        Distillation(teacher_checkpoint=str(tmp_path / "absent.ckpt")).setup(None, student, "fit")
    with pytest.raises(ConfigError, match="do not fit"):
        bad = build_network(GENOTYPE, num_classes=6, C=8, layers=3)
        Distillation(teacher=bad, teacher_weights=str(weights)).setup(None, student, "fit")


def test_invalid_arguments():
    with pytest.raises(ConfigError, match="needs the teacher network"):
        Distillation(teacher_weights="w.pt")
    with pytest.raises(ConfigError, match="temperature"):
        Distillation(teacher=net(), temperature=0.0)
    with pytest.raises(ConfigError, match="weight"):
        Distillation(teacher=net(), weight=-1.0)


# ----------------------------------------------------------------------------- co-search
class CoSearchSpace(DartsSpace):
    """A space that also has a teacher head (stand-in for FasterSeg's shared supernet)."""

    def teacher_logits(self, x):
        return 2.0 * self(x)


def test_co_search_uses_the_spaces_teacher_logits_and_trains_the_student_only():
    torch.manual_seed(0)
    space = CoSearchSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2)
    module = SearchModule(space)
    cb = Distillation()
    cb.setup(None, module, "fit")
    b = batch()
    logits = module(b["image"])
    term = cb.weight_loss(module, logits, b)
    assert term.item() > 0
    (grad,) = torch.autograd.grad(term, logits)
    assert grad.abs().sum() > 0  # the student side; the teacher side was detached

    with pytest.raises(ConfigError, match="no teacher given.*teacher_logits"):
        Distillation().setup(None, SearchModule(DartsSpace(num_classes=6, C=4, layers=3)), "fit")


def test_distillation_in_a_search(tmp_path, synthetic_root):
    torch.manual_seed(0)
    space = DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2, stem_multiplier=2)
    t = trainer(tmp_path, [Distillation(teacher=net(1))])
    t.fit(SearchModule(space), data(synthetic_root, search=True))
    assert float(t.callback_metrics["train/weight_loss/Distillation"]) > 0


def _retrain_cli(tmp_path, root, *extra):
    from lightning_nas.cli import NASCLI

    return NASCLI(
        args=[
            "fit",
            "-c",
            "experiments/retrain_darts.yaml",
            *extra,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--model.init_args.network.init_args.C=4",
            "--model.init_args.network.init_args.layers=3",
            f"--data.init_args.root={root}",
            "--data.init_args.num_train=16",
            "--data.init_args.num_val=8",
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=4",
        ]
    )


def test_configured_from_the_command_line(tmp_path, synthetic_root):
    """A CLI checkpoint loads without arguments; a network + weights file is given in YAML."""
    teacher = _retrain_cli(
        tmp_path / "teacher",
        synthetic_root,
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=2",
    )
    ckpt = teacher.trainer.checkpoint_callback.last_model_path
    cli = _retrain_cli(
        tmp_path / "student",
        synthetic_root,
        "--trainer.fast_dev_run=true",
        "--trainer.callbacks+=callbacks.distillation.Distillation",
        f"--trainer.callbacks.teacher_checkpoint={ckpt}",
    )
    assert float(cli.trainer.callback_metrics["train/loss/Distillation"]) > 0

    weights = tmp_path / "teacher.pt"
    torch.save(teacher.model.network.state_dict(), weights)
    overlay = tmp_path / "distil.yaml"
    overlay.write_text(
        "trainer:\n  callbacks:\n  - class_path: callbacks.distillation.Distillation\n"
        "    init_args:\n      teacher:\n        class_path: lightning_nas.networks.DartsNetwork\n"
        f"        init_args: {{genotype: {GENOTYPE}, num_classes: 6, C: 4, layers: 3}}\n"
        f"      teacher_weights: {weights}\n      temperature: 2.0\n"
    )
    cli = _retrain_cli(
        tmp_path / "s2", synthetic_root, "-c", str(overlay), "--trainer.fast_dev_run=true"
    )
    (cb,) = [c for c in cli.trainer.callbacks if isinstance(c, Distillation)]
    assert cb.temperature == 2.0
    for a, b in zip(cb.teacher.parameters(), teacher.model.network.parameters()):
        assert torch.equal(a.cpu(), b.cpu())
