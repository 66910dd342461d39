"""ExactResume: a run resumed from any checkpoint, even mid-epoch, continues bit-identically.

What an uninterrupted run does after a checkpoint depends on three things besides the weights,
optimizers and schedulers Lightning restores:

* the global random generators (torch on CPU and on every CUDA device, NumPy, Python's
  ``random``): the sampling of a stochastic supernet (FasterSeg's widths), dropout, and the
  augmentation seeds of a loader without workers all draw from them. They are saved in every
  checkpoint (``checkpoint["lightning_nas/resume"]["rng"]``, tensors and numbers only, so the
  checkpoint still loads with ``weights_only=True``) and restored when training starts again;
* the training loaders' position in the epoch: the DataModules' loaders
  (:class:`~lightning_nas.data.loader.ResumableDataLoader`) report it through Lightning's loader
  ``state_dict`` protocol (saved here too, and loaded here when Lightning does not) and skip the
  batches already used;
* nothing else between the save and the next batch draws random numbers (validation and
  checkpointing do not).

So a checkpoint saved between two batches (``ModelCheckpoint(every_n_train_steps=N)``) resumes
exactly where it was saved. Every checkpoint records whether it was saved mid-epoch
(``checkpoint["lightning_nas/mid_epoch"]``). Resuming mid-epoch with a training loader that
cannot say where it was (a plain ``DataLoader``), or from a checkpoint written before these
keys existed, continues correctly but restarts the epoch's data: a warning says it is not
bit-identical. Under DDP rank 0's generators are saved and restored on every rank, which is
right because the ranks draw alike (augmentation seeds are mixed with the rank afterwards).

:class:`~lightning_nas.search.SearchModule` and
:class:`~lightning_nas.segmentation.SegmentationModule` add this callback unless one is
configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_nas.resume import CHECKPOINT_KEY, MID_EPOCH_KEY, capture_rng, restore_rng

__all__ = ["CHECKPOINT_KEY", "MID_EPOCH_KEY", "ExactResume", "capture_rng", "restore_rng"]


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, Mapping):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    if isinstance(tree, Sequence) and not isinstance(tree, (str, bytes)):
        return [leaf for value in tree for leaf in _leaves(value)]
    return [tree]


def _resumable(loader: Any) -> bool:
    return callable(getattr(loader, "state_dict", None)) and callable(
        getattr(loader, "discard_resume", None)
    )


class ExactResume(Callback):
    """Save the global random generators and restore them on resume (see the module)."""

    def __init__(self) -> None:
        """Nothing to configure."""
        self._loaded: dict[str, Any] | None = None
        self._old_mid_epoch = False

    @staticmethod
    def saving_mid_epoch(trainer: pl.Trainer) -> bool:
        """Whether a checkpoint saved now lies between two training batches of an epoch.

        Saved after the last batch (the epoch-end validation, ``on_train_epoch_end``), before
        the first, or outside ``fit``, it does not.
        """
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return (
            trainer.state.fn == TrainerFn.FITTING
            and progress.ready > 0
            and not trainer.is_last_batch
        )

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        mid_epoch = self.saving_mid_epoch(trainer)
        checkpoint[MID_EPOCH_KEY] = mid_epoch
        loaders = [
            loader.state_dict() if _resumable(loader) else {}
            for loader in _leaves(trainer.train_dataloader)
        ]
        checkpoint[CHECKPOINT_KEY] = {
            "rng": capture_rng(),
            "mid_epoch": mid_epoch,
            "loaders": loaders,
        }

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._loaded = checkpoint.get(CHECKPOINT_KEY)
        self._old_mid_epoch = self._loaded is None and bool(checkpoint.get(MID_EPOCH_KEY))

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaded, self._loaded = self._loaded, None
        old_mid_epoch, self._old_mid_epoch = self._old_mid_epoch, False
        if trainer.ckpt_path is None:
            return
        loaders = _leaves(trainer.train_dataloader)
        if old_mid_epoch:
            self._warn("it was written before checkpoints held the generators' states")
        if loaded is None:
            return
        if not loaded["mid_epoch"]:
            for loader in loaders:  # an epoch-end state (limit_train_batches) is not a position
                if _resumable(loader):
                    loader.discard_resume()
        else:
            # Lightning loads the loaders' states itself, unless the loaders were set up before
            # the checkpoint was restored (``trainer.estimated_stepping_batches`` in
            # ``configure_optimizers`` does that); loading them twice is harmless
            states = loaded.get("loaders", [])
            if len(states) == len(loaders):
                for loader, state in zip(loaders, states):
                    if _resumable(loader) and state:
                        loader.load_state_dict(state)
            plain = [type(loader).__name__ for loader in loaders if not _resumable(loader)]
            if plain:
                self._warn(
                    f"the training loader ({', '.join(plain)}) cannot resume mid-epoch "
                    "(use the DataModules' loaders, lightning_nas.data.loader.ResumableDataLoader)"
                )
        restore_rng(loaded["rng"])
        if self._skips_epoch_start(trainer):
            for callback in trainer.callbacks:  # as Lightning would: callbacks, then the module
                callback.on_train_epoch_start(trainer, pl_module)
            pl_module.on_train_epoch_start()

    @staticmethod
    def _skips_epoch_start(trainer: pl.Trainer) -> bool:
        """Whether Lightning will start the next epoch without ``on_train_epoch_start``.

        Lightning 2.x resumes a checkpoint saved at the end of an epoch's last batch (before
        its validation) by closing that epoch and starting the next one without calling
        ``on_train_epoch_start``; the hooks (the module's per-epoch reseeding and schedule) are
        called here instead.
        """
        fit_loop = trainer.fit_loop
        return bool(
            fit_loop.restarted_mid_epoch
            and fit_loop.epoch_loop.restarted_on_train_batch_end
            and fit_loop.epoch_loop.batch_progress.is_last_batch
        )

    @staticmethod
    def _warn(why: str) -> None:
        rank_zero_warn(
            "resuming from a checkpoint saved in the middle of an epoch: the run continues "
            f"correctly but not bit-identically to an uninterrupted one, because {why}"
        )
