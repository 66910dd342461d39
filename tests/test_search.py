"""SearchModule: the bi-level loop, warm-up, loss-term protocol, genotype output."""

import lightning.pytorch as pl
import pytest
import torch

from callbacks import GenotypeWriter
from lightning_nas import genotypes
from lightning_nas.data import SyntheticDataModule
from lightning_nas.loss_terms import LossTerm
from lightning_nas.search import SearchModule
from lightning_nas.spaces import DartsSpace


def tiny_space(seed=0):
    torch.manual_seed(seed)
    return DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2, stem_multiplier=2)


def tiny_data(root, **kw):
    kw.setdefault("batch_size", 4)
    return SyntheticDataModule(root=root, num_train=16, num_val=8, image_size=32, search=True, **kw)


def trainer(tmp_path, **kw):
    kw.setdefault("max_epochs", 1)
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.arch_parameters().items()}


class ConstantTerm(LossTerm):
    """Adds a fixed architecture term and records what it saw."""

    def __init__(self, value, phase="arch"):
        self.value, self.phase, self.calls = value, phase, 0

    def arch_loss(self, module, logits, batch):
        if self.phase != "arch":
            return None
        self.calls += 1
        return module.space.alphas_normal.sum() * 0 + self.value

    def weight_loss(self, module, logits, batch):
        if self.phase != "weight":
            return None
        self.calls += 1
        return logits.sum() * 0 + self.value


def test_search_updates_alphas_writes_genotype_and_checkpoint(tmp_path, synthetic_root):
    module = SearchModule(tiny_space())
    before = snapshot(module)
    w_before = [p.detach().clone() for p in module.weight_parameters()]
    t = trainer(tmp_path, max_epochs=2)
    t.fit(module, tiny_data(synthetic_root))
    after = snapshot(module)
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(w_before, module.weight_parameters()))
    # two optimizer steps per batch: 16 images -> trainA/trainB of 8 -> 2 batches of 4, 2 epochs
    assert t.global_step == 2 * 2 * 2
    ckpt_dir = t.checkpoint_callback.dirpath
    written = genotypes.load(f"{ckpt_dir}/genotype.yaml")
    assert written == module.derive()
    assert (tmp_path / "checkpoints" / "genotype_epoch=000.yaml").exists() or any(
        p.name == "genotype_epoch=000.yaml" for p in tmp_path.rglob("*.yaml")
    )
    ckpt = torch.load(
        t.checkpoint_callback.best_model_path or f"{ckpt_dir}/last.ckpt", weights_only=False
    )
    assert genotypes.from_dict(ckpt["genotype"]) == written
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 1


def test_cosine_schedule_steps_once_per_epoch(tmp_path, synthetic_root):
    sched = {
        "class_path": "torch.optim.lr_scheduler.CosineAnnealingLR",
        "init_args": {"T_max": 3, "eta_min": 0.001},
    }
    module = SearchModule(tiny_space(), weight_lr_scheduler=sched)
    t = trainer(tmp_path, max_epochs=3)
    t.fit(module, tiny_data(synthetic_root))
    lr = module.optimizers()[0].param_groups[0]["lr"]
    expected = 0.001 + (0.025 - 0.001) * (1 + torch.cos(torch.tensor(torch.pi * 2 / 3))) / 2
    assert lr == pytest.approx(float(expected), rel=1e-6)


def test_arch_start_epoch_keeps_alphas_fixed_during_warmup(tmp_path, synthetic_root):
    module = SearchModule(tiny_space(), arch_start_epoch=1)
    before = snapshot(module)
    trainer(tmp_path, max_epochs=1).fit(module, tiny_data(synthetic_root))
    assert all(torch.equal(before[k], v) for k, v in snapshot(module).items())
    trainer(tmp_path, max_epochs=2).fit(
        module2 := SearchModule(tiny_space(), arch_start_epoch=1), tiny_data(synthetic_root)
    )
    assert any(not torch.equal(before[k], v) for k, v in snapshot(module2).items())


@pytest.mark.parametrize("phase", ["arch", "weight"])
def test_loss_term_callbacks_are_added_and_logged(tmp_path, synthetic_root, phase):
    term = ConstantTerm(10.0, phase)
    module = SearchModule(tiny_space())
    t = trainer(tmp_path, callbacks=[term], max_steps=2)
    t.fit(module, tiny_data(synthetic_root))
    assert term.calls == 1
    key = f"train/{phase}_loss"
    logged = t.callback_metrics
    assert float(logged[f"{key}/ConstantTerm"]) == pytest.approx(10.0)
    assert float(logged[key]) == pytest.approx(float(logged[f"{key}/task"]) + 10.0, rel=1e-5)


def test_absent_loss_term_adds_nothing(tmp_path, synthetic_root):
    module = SearchModule(tiny_space())
    t = trainer(tmp_path, max_steps=2)
    t.fit(module, tiny_data(synthetic_root))
    logged = t.callback_metrics
    assert float(logged["train/arch_loss"]) == float(logged["train/arch_loss/task"])
    assert not [k for k in logged if k.startswith("train/arch_loss/") and not k.endswith("task")]


def test_constant_term_does_not_change_the_search(tmp_path, synthetic_root):
    """A term with zero gradient changes the logged loss but not the parameters."""
    a = SearchModule(tiny_space())
    trainer(tmp_path, max_steps=4).fit(a, tiny_data(synthetic_root))
    b = SearchModule(tiny_space())
    trainer(tmp_path, max_steps=4, callbacks=[ConstantTerm(3.0)]).fit(b, tiny_data(synthetic_root))
    for k, v in snapshot(a).items():
        torch.testing.assert_close(snapshot(b)[k], v)


def test_non_search_batches_are_rejected_with_a_clear_error(tmp_path, synthetic_root):
    module = SearchModule(tiny_space())
    data = SyntheticDataModule(root=synthetic_root, num_train=16, num_val=8, image_size=32)
    with pytest.raises(ValueError, match="search mode"):
        trainer(tmp_path, max_steps=1).fit(module, data)


def test_unrolled_search_runs_and_differs_from_first_order(tmp_path, synthetic_root):
    first = SearchModule(tiny_space())
    trainer(tmp_path, max_steps=4).fit(first, tiny_data(synthetic_root))
    second = SearchModule(tiny_space(), unrolled=True)
    weights_before = [p.detach().clone() for p in second.weight_parameters()]
    trainer(tmp_path, max_steps=4).fit(second, tiny_data(synthetic_root))
    assert any(not torch.equal(snapshot(first)[k], v) for k, v in snapshot(second).items())
    assert any(not torch.equal(a, b) for a, b in zip(weights_before, second.weight_parameters()))


def test_unrolled_requires_sgd():
    module = SearchModule(
        tiny_space(),
        unrolled=True,
        weight_optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
    )
    with pytest.raises(ValueError, match="SGD"):
        module.configure_optimizers()


def test_genotype_writer_is_added_once(tmp_path, synthetic_root):
    module = SearchModule(tiny_space())
    writer = GenotypeWriter(dirpath=str(tmp_path / "g"))
    t = trainer(tmp_path, callbacks=[writer])
    t.fit(module, tiny_data(synthetic_root))
    assert sum(isinstance(c, GenotypeWriter) for c in t.callbacks) == 1
    assert genotypes.load(tmp_path / "g" / "genotype.yaml") == module.derive()


def test_checkpoint_loads_on_its_own(tmp_path, synthetic_root):
    module = SearchModule(tiny_space())
    t = trainer(tmp_path, max_steps=2)
    t.fit(module, tiny_data(synthetic_root))
    path = tmp_path / "x.ckpt"
    t.save_checkpoint(path)
    loaded = SearchModule.load_from_checkpoint(path, space=tiny_space(seed=1))
    for k, v in module.arch_parameters().items():
        assert torch.equal(loaded.arch_parameters()[k], v)
    assert loaded.derive() == module.derive()


def test_weight_gradients_are_clipped(tmp_path, synthetic_root):
    norms = []

    class Clipped(SearchModule):
        def on_before_optimizer_step(self, optimizer):
            super().on_before_optimizer_step(optimizer)
            if optimizer is self.optimizers()[0].optimizer:
                grads = [p.grad for p in self.weight_parameters() if p.grad is not None]
                norms.append(
                    float(
                        torch.linalg.vector_norm(
                            torch.stack([torch.linalg.vector_norm(g) for g in grads])
                        )
                    )
                )

    module = Clipped(tiny_space(), gradient_clip_val=1e-3)
    trainer(tmp_path, max_steps=4).fit(module, tiny_data(synthetic_root))
    assert norms and max(norms) <= 1e-3 * (1 + 1e-4)


def test_module_second_order_step_passes_lr_momentum_and_decay(
    tmp_path, synthetic_root, monkeypatch
):
    import lightning_nas.search as search_mod

    seen = []
    real = search_mod.unrolled_arch_gradient

    def spy(*args, **kwargs):
        seen.append(
            {k: kwargs[k] for k in ("lr", "momentum", "weight_decay")}
            | {"bufs": sum(b is not None for b in kwargs["momentum_buffers"])}
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(search_mod, "unrolled_arch_gradient", spy)
    opt = {
        "class_path": "torch.optim.SGD",
        "init_args": {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-3},
    }
    module = SearchModule(
        tiny_space(), unrolled=True, weight_optimizer=opt, weight_lr_scheduler=None
    )
    trainer(tmp_path, max_steps=4).fit(module, tiny_data(synthetic_root))
    assert seen[0] == {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-3, "bufs": 0}
    assert seen[1]["bufs"] == len([p for p in module.weight_parameters() if p.requires_grad])


def test_two_loss_terms_are_summed(tmp_path, synthetic_root):
    class Other(ConstantTerm):
        pass

    module = SearchModule(tiny_space())
    t = trainer(tmp_path, max_steps=2, callbacks=[ConstantTerm(1.5), Other(2.0)])
    t.fit(module, tiny_data(synthetic_root))
    m = t.callback_metrics
    assert float(m["train/arch_loss"]) == pytest.approx(
        float(m["train/arch_loss/task"]) + 3.5, rel=1e-5
    )
    assert float(m["train/arch_loss/Other"]) == pytest.approx(2.0)


def test_plateau_scheduler_is_rejected():
    from lightning_nas.errors import ConfigError

    module = SearchModule(
        tiny_space(),
        weight_lr_scheduler={
            "class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau",
            "init_args": {},
        },
    )
    with pytest.raises(ConfigError, match="ReduceLROnPlateau"):
        module.configure_optimizers()
