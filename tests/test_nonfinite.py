"""Non-finite losses: a NaN term stops the run with one line, or the batch is skipped, counted."""

from __future__ import annotations

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from test_search import snapshot, tiny_data, tiny_space, trainer

from callbacks import ArchitectureLogger
from lightning_nas import build_network
from lightning_nas.data import SyntheticDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.finite import (
    CHECKPOINT_KEY,
    NonFiniteGuard,
    NonFiniteLossError,
    check_terms,
    first_nonfinite,
)
from lightning_nas.loss_terms import LossTerm
from lightning_nas.search import SearchModule
from lightning_nas.segmentation import SegmentationModule

NAN = float("nan")


class NaNAt(LossTerm):
    """A zero term of one phase that is NaN on the chosen ``(epoch, batch_idx)`` pairs.

    Args:
        phase: ``"arch"`` or ``"weight"``.
        at: the ``(epoch, batch_idx)`` pairs where the term is NaN.
        term: the term's name.
    """

    def __init__(
        self,
        phase: str = "weight",
        at: tuple[tuple[int, int], ...] = ((0, 0),),
        term: str = "latency",
    ) -> None:
        self.phase, self.at, self.term = phase, {tuple(x) for x in at}, term
        self.batch_idx = -1
        self.injected = 0

    @property
    def name(self) -> str:
        return self.term

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batch_idx = batch_idx

    def _value(self, module, logits, phase):
        if phase != self.phase:
            return None
        if (module.current_epoch, self.batch_idx) in self.at:
            self.injected += 1
            return logits.mean() * 0 + NAN
        return logits.mean() * 0

    def arch_loss(self, module, logits, batch):
        return self._value(module, logits, "arch")

    def weight_loss(self, module, logits, batch):
        return self._value(module, logits, "weight")


class Unchanged(pl.Callback):
    """Records whether the given parameters changed over each batch."""

    def __init__(self, params):
        self.params, self.changed = params, {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before = [p.detach().clone() for p in self.params(module)]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        after = self.params(module)
        key = (trainer.current_epoch, batch_idx)
        self.changed[key] = any(not torch.equal(a, b) for a, b in zip(self.before, after))


def finite(state_dict):
    return all(torch.isfinite(v).all() for v in state_dict.values() if v.is_floating_point())


def search_trainer(tmp_path, callbacks, **kw):
    """The tiny search's trainer, without architecture heatmaps (slow to draw)."""
    return trainer(tmp_path, callbacks=[*callbacks, ArchitectureLogger(plot=False)], **kw)


def one_checkpoint(tmp_path):
    (path,) = (tmp_path / "checkpoints").glob("*.ckpt")
    return path


# ------------------------------------------------------------------ the shared helper
def test_check_terms_names_the_first_nonfinite_term_or_the_total():
    ok, nan, big = torch.tensor(1.0), torch.tensor(NAN), torch.tensor(3e38)
    assert check_terms({"task": ok}, ok, "arch", 0, 0, 0) is None
    assert first_nonfinite({"a": ok, "b": nan, "c": nan}) == "b"
    assert check_terms({"a": big, "b": big}, big + big, "x", 0, 0, 0, mode="skip") == "total"
    with pytest.raises(NonFiniteLossError) as info:
        check_terms({"task": ok, "latency": nan}, ok + nan, "weight", 2, 9, 3)
    message = str(info.value)
    assert "term 'latency' = nan in the weight step at epoch 2, global step 9 (batch 3)" in message
    assert "\n" not in message and "nonfinite: skip" in message
    # another rank's NaN: the same decision here, without a local name
    assert check_terms({"t": ok}, ok, "arch", 0, 0, 0, "skip", any_rank=lambda f: True)
    with pytest.raises(NonFiniteLossError, match="a term on another rank in the arch step"):
        check_terms({"t": ok}, ok, "arch", 0, 0, 0, any_rank=lambda f: True)


def test_skip_stops_when_the_forward_left_a_buffer_nonfinite():
    """Skipping cannot undo BatchNorm statistics of a non-finite forward: that one stops."""
    module = torch.nn.Sequential(torch.nn.BatchNorm2d(2))
    module.trainer, module.current_epoch, module.global_step = SimpleNamespace(world_size=1), 1, 5
    guard, nan = NonFiniteGuard("skip"), torch.tensor(NAN)
    assert guard.check(module, {"task": nan}, nan, "weight", 2) and guard.skipped == {"weight": 1}
    module[0].running_mean.fill_(NAN)
    with pytest.raises(NonFiniteLossError, match=r"left buffer '0\.running_mean' = nan"):
        guard.check(module, {"task": nan}, nan, "weight", 3)


@pytest.mark.parametrize("cls", ["search", "segmentation"])
def test_invalid_mode_is_a_config_error(cls):
    with pytest.raises(ConfigError, match=r"model\.nonfinite: .*'raise', 'skip'.*'maybe'"):
        if cls == "search":
            SearchModule(tiny_space(), nonfinite="maybe")
        else:
            SegmentationModule(torch.nn.Conv2d(3, 6, 1), num_classes=6, nonfinite="maybe")
    with pytest.raises(ConfigError, match="model.nonfinite"):
        NonFiniteGuard("ignore")


# ------------------------------------------------------------------ search: raise
@pytest.mark.parametrize(
    ("phase", "at", "expected"),
    [
        # 2 batches per epoch, 2 optimizer steps per batch: epoch 1 starts at global step 4
        (
            "arch",
            (1, 0),
            "term 'latency' = nan in the arch step at epoch 1, global step 4 (batch 0)",
        ),
        ("weight", (1, 1), "term 'latency' = nan in the weight step at epoch 1, global step 7"),
    ],
    ids=["arch", "weight"],
)
def test_search_raises_one_line_and_keeps_the_last_checkpoint(
    tmp_path, synthetic_root, phase, at, expected
):
    module = SearchModule(tiny_space())
    t = search_trainer(tmp_path, [NaNAt(phase, (at,))], max_epochs=2)
    with pytest.raises(NonFiniteLossError) as info:
        t.fit(module, tiny_data(synthetic_root))
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert info.value.term == "latency" and info.value.epoch == 1
    # raised before the backward pass: the weights and alphas in memory stay finite (what an
    # OnExceptionCheckpoint would write)
    assert finite(module.state_dict())
    # the epoch-0 checkpoint is the only one, finite and loadable
    path = one_checkpoint(tmp_path)
    assert path.name.startswith("epoch=0-")
    ckpt = torch.load(path, weights_only=False)
    assert finite(ckpt["state_dict"])
    SearchModule.load_from_checkpoint(path, space=tiny_space())


@pytest.mark.parametrize(("phase", "term"), [("arch", "latency"), ("weight", "weight/latency")])
def test_unrolled_search_names_the_term(tmp_path, synthetic_root, phase, term):
    """Second order, checked after the unrolled gradient (the weights are restored by then).

    A weight term is evaluated first, by the virtual step, and spoils all that follows: it is
    named (as ``weight/<term>``), not the task loss.
    """
    module = SearchModule(tiny_space(), unrolled=True)
    t = search_trainer(tmp_path, [NaNAt(phase, ((0, 0),))], max_steps=2)
    with pytest.raises(
        NonFiniteLossError, match=f"term '{term}' = nan in the arch step at epoch 0"
    ):
        t.fit(module, tiny_data(synthetic_root))
    assert finite(module.state_dict())


# ------------------------------------------------------------------ search: skip
@pytest.mark.filterwarnings("ignore:ArchitectureLogger")
def test_search_skip_counts_logs_checkpoints_and_warns(tmp_path, synthetic_root):
    module = SearchModule(tiny_space(), nonfinite="skip")
    arch, weight = NaNAt("arch", ((0, 1), (1, 0))), NaNAt("weight", ((1, 1),), term="distill")
    alphas = Unchanged(lambda m: list(m.arch_parameters().values()))
    weights = Unchanged(lambda m: m.weight_parameters())
    t = search_trainer(tmp_path, [arch, weight, alphas, weights], max_epochs=2)
    before = snapshot(module)
    with pytest.warns(UserWarning, match=r"skipped 3 batches .*\(arch: 2, weight: 1\)"):
        t.fit(module, tiny_data(synthetic_root))
    assert arch.injected == 2 and weight.injected == 1
    assert module.nonfinite_skipped == {"arch": 2, "weight": 1}
    assert float(t.callback_metrics["train/nonfinite_skipped"]) == 3
    assert t.global_step == 2 * 2 * 2 - 3  # a skipped phase makes no optimizer step
    # no update from a skipped phase; updates from the others
    assert alphas.changed == {(0, 0): True, (0, 1): False, (1, 0): False, (1, 1): True}
    assert weights.changed == {(0, 0): True, (0, 1): True, (1, 0): True, (1, 1): False}
    assert finite(module.state_dict())
    assert any(not torch.equal(before[k], v) for k, v in snapshot(module).items())
    # the count is in the checkpoint and comes back with it
    ckpt = torch.load(one_checkpoint(tmp_path), weights_only=False)
    assert ckpt[CHECKPOINT_KEY] == {"arch": 2, "weight": 1}
    resumed = SearchModule(tiny_space(), nonfinite="skip")
    resumed.on_load_checkpoint(ckpt)
    assert resumed.nonfinite_skipped == {"arch": 2, "weight": 1}


# ------------------------------------------------------------------ segmentation
def segmentation(tmp_path, synthetic_root, callbacks, nonfinite="raise", max_epochs=2):
    torch.manual_seed(0)
    net = build_network("experiments/genotypes/darts_v2.yaml", num_classes=6, C=4, layers=3)
    module = SegmentationModule(net, nonfinite=nonfinite)
    data = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, batch_size=4
    )
    t = trainer(tmp_path, max_epochs=max_epochs, callbacks=callbacks)
    return module, t, data


def test_segmentation_raises_one_line_and_keeps_the_last_checkpoint(tmp_path, synthetic_root):
    module, t, data = segmentation(tmp_path, synthetic_root, [NaNAt("weight", ((1, 2),))])
    with pytest.raises(NonFiniteLossError) as info:
        t.fit(module, data)
    message = str(info.value)
    # 4 batches per epoch, one optimizer step each
    assert (
        "term 'latency' = nan in the training step at epoch 1, global step 6 (batch 2)" in message
    )
    assert "\n" not in message
    assert finite(module.state_dict())
    path = one_checkpoint(tmp_path)
    assert path.name.startswith("epoch=0-")
    assert finite(torch.load(path, weights_only=False)["state_dict"])


def test_segmentation_skip_steps_nothing_on_a_skipped_batch(tmp_path, synthetic_root):
    inject = NaNAt("weight", ((0, 1), (1, 3)))
    params = Unchanged(lambda m: [p for p in m.parameters() if p.requires_grad])
    module, t, data = segmentation(tmp_path, synthetic_root, [inject, params], nonfinite="skip")
    with pytest.warns(UserWarning, match=r"skipped 2 batches .*\(training: 2\)"):
        t.fit(module, data)
    assert inject.injected == 2 and module.nonfinite_skipped == {"training": 2}
    assert float(t.callback_metrics["train/nonfinite_skipped"]) == 2
    # SGD with momentum would move the weights on a zero gradient: the skipped batches do not
    assert not params.changed[(0, 1)] and not params.changed[(1, 3)]
    assert params.changed[(0, 2)] and params.changed[(1, 2)]
    assert finite(module.state_dict())
    ckpt = torch.load(one_checkpoint(tmp_path), weights_only=False)
    assert ckpt[CHECKPOINT_KEY] == {"training": 2}


# ------------------------------------------------------------------ the command line
def test_cli_prints_the_error_as_one_line(tmp_path, synthetic_root, capsys):
    from lightning_nas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--model=SearchModule",
                "--model.space=DartsSpace",
                "--model.space.C=4",
                "--model.space.layers=3",
                "--model.space.steps=2",
                "--model.space.multiplier=2",
                "--data=SyntheticDataModule",
                f"--data.root={synthetic_root}",
                "--data.num_train=16",
                "--data.num_val=8",
                "--data.image_size=32",
                "--data.batch_size=4",
                "--data.search=true",
                "--trainer.callbacks+=test_nonfinite.NaNAt",
                "--trainer.callbacks.phase=weight",
                "--trainer.fast_dev_run=true",
                "--trainer.accelerator=cpu",
                "--trainer.enable_progress_bar=false",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: NonFiniteLossError: non-finite loss: term 'latency' = nan in the weight step"
    )
