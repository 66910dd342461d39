"""Non-finite losses: find the offending loss term, stop the run or skip the batch and count it.

A training module computes its loss as a sum of named terms (the task loss and the terms of the
loss-term callbacks). Before the backward pass it asks :class:`NonFiniteGuard` whether every term
and their total are finite. With ``nonfinite: raise`` (the default) a NaN or an infinity raises
:class:`NonFiniteLossError`, whose one-line message names the term, the step and the epoch; the
weights were not touched, and the checkpoints written so far stay as they are. With
``nonfinite: skip`` the module skips that backward pass and optimizer step, and the guard counts
the skipped batches per phase (kept in the checkpoint).

Under data parallelism every rank must take the same decision, or the ranks fall out of step in
the next gradient all-reduce: the guard reduces the "non-finite" flag over the ranks (one small
all-reduce, only when the world size is above 1), so a NaN on one rank stops or skips the step on
all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from lightning_nas.errors import ConfigError

#: The accepted values of a module's ``nonfinite`` argument.
NONFINITE_MODES = ("raise", "skip")
#: Checkpoint key of the skipped-batch counts.
CHECKPOINT_KEY = "lightning_nas/nonfinite_skipped"
#: Log key of the number of skipped batches.
LOG_KEY = "train/nonfinite_skipped"


class NonFiniteLossError(RuntimeError):
    """A loss term (or a buffer after a skipped step) is NaN or infinite; the message is one line.

    Args:
        term: name of the offending term; ``None`` when it is non-finite on another rank only.
        value: its value as text (``"nan"``, ``"inf"``).
        phase: the step it happened in (``"arch"``, ``"weight"``, ``"training"``).
        epoch: the current epoch.
        step: the trainer's global step.
        batch_idx: the index of the batch in the epoch.
        buffer: ``term`` is a buffer (e.g. BatchNorm statistics) left non-finite by the forward
            pass of a skipped step, which skipping cannot undo.

    Example:
        >>> err = NonFiniteLossError("latency", "nan", "arch", 3, 120, 7)
        >>> for part in str(err).split("; "):
        ...     print(part)
        non-finite loss: term 'latency' = nan in the arch step at epoch 3, global step 120 (batch 7)
        the last checkpoint is kept
        set nonfinite: skip to skip such batches and count them
    """

    def __init__(
        self,
        term: str | None,
        value: str | None,
        phase: str,
        epoch: int,
        step: int,
        batch_idx: int,
        buffer: bool = False,
    ) -> None:
        self.term, self.value, self.phase = term, value, phase
        self.epoch, self.step, self.batch_idx = epoch, step, batch_idx
        where = f"at epoch {epoch}, global step {step} (batch {batch_idx})"
        if buffer:
            subject = "a buffer on another rank" if term is None else f"buffer {term!r} = {value}"
            message = (
                f"non-finite loss: the skipped {phase} step {where} left {subject} (its forward "
                "pass is non-finite, and skipping the step cannot undo it); the last checkpoint "
                "is kept"
            )
        else:
            subject = "a term on another rank" if term is None else f"term {term!r} = {value}"
            message = (
                f"non-finite loss: {subject} in the {phase} step {where}; the last checkpoint is "
                "kept; set nonfinite: skip to skip such batches and count them"
            )
        super().__init__(message)


def check_mode(value: str, key: str = "model.nonfinite") -> str:
    """``value`` if it is one of :data:`NONFINITE_MODES`, else a :class:`ConfigError`.

    Example:
        >>> check_mode("skip")
        'skip'
    """
    if value not in NONFINITE_MODES:
        raise ConfigError(
            f"{key}: expected one of {', '.join(map(repr, NONFINITE_MODES))}, got {value!r}"
        )
    return value


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first tensor with a NaN or infinite element (``None``: all finite).

    One device-to-host synchronisation when everything is finite.

    Example:
        >>> first_nonfinite({"a": torch.tensor(1.0), "b": torch.tensor([2.0, float("inf")])})
        'b'
    """
    if not tensors:
        return None
    flags = torch.stack([torch.isfinite(t.detach()).all() for t in tensors.values()])
    if bool(flags.all()):
        return None
    return next(name for name, ok in zip(tensors, flags.tolist()) if not ok)


def _value_text(tensor: torch.Tensor) -> str:
    """The first non-finite element of ``tensor`` as text (``nan``, ``inf``, ``-inf``)."""
    flat = tensor.detach().reshape(-1)
    bad = flat[~torch.isfinite(flat)]
    return str(float(bad[0])) if bad.numel() else str(float(flat[0]))


def check_terms(
    terms: Mapping[str, torch.Tensor],
    total: torch.Tensor,
    phase: str,
    epoch: int,
    step: int,
    batch_idx: int,
    mode: str = "raise",
    any_rank: Callable[[bool], bool] | None = None,
) -> str | None:
    """Check the loss terms of a step and their total before the backward pass.

    Args:
        terms: the terms by name (tensors of any shape, usually scalars).
        total: the loss to be back-propagated; named ``"total"`` when it alone is non-finite.
        phase: the step's name in the message (``"arch"``, ``"weight"``, ``"training"``).
        epoch: the current epoch, for the message.
        step: the global step, for the message.
        batch_idx: the batch index, for the message.
        mode: ``"raise"``: raise :class:`NonFiniteLossError`; ``"skip"``: return the name.
        any_rank: reduces the local "non-finite" flag over ranks ("any" semantics), so that every
            rank decides alike; ``None`` on a single process.

    Returns:
        ``None`` when every term is finite (on every rank); else, with ``mode="skip"``, the
        first offending term's name (``"<another rank>"`` when only another rank has one).

    Raises:
        NonFiniteLossError: with ``mode="raise"``, naming the term, the phase, epoch and step.

    Example:
        >>> terms = {"task": torch.tensor(0.7), "latency": torch.tensor(float("nan"))}
        >>> check_terms(terms, sum(terms.values()), "arch", 0, 4, 2, mode="skip")
        'latency'
    """
    name = first_nonfinite({**terms, "total": total})
    if any_rank is not None and any_rank(name is not None) and name is None:
        name = "<another rank>"
    if name is None:
        return None
    if mode == "raise":
        if name == "<another rank>":
            raise NonFiniteLossError(None, None, phase, epoch, step, batch_idx)
        value = _value_text(total if name == "total" else terms[name])
        raise NonFiniteLossError(name, value, phase, epoch, step, batch_idx)
    return name


class NonFiniteGuard:
    """A training module's policy for non-finite losses, and its count of skipped batches.

    Args:
        mode: ``"raise"`` or ``"skip"`` (see the module docstring).
        key: the config key named by the error for an invalid ``mode``.

    Example:
        >>> guard = NonFiniteGuard("skip")
        >>> guard.skipped
        {}
        >>> guard.load_state_dict({"arch": 2})
        >>> guard.summary()
        'nonfinite: skip skipped 2 batches with a non-finite loss (arch: 2)'
    """

    def __init__(self, mode: str, key: str = "model.nonfinite") -> None:
        self.mode = check_mode(mode, key)
        self.skipped: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Skipped batches over all phases."""
        return sum(self.skipped.values())

    def check(
        self,
        module: Any,
        terms: Mapping[str, torch.Tensor],
        total: torch.Tensor,
        phase: str,
        batch_idx: int,
    ) -> bool:
        """Whether the step of ``phase`` must be skipped; raises in ``"raise"`` mode.

        Args:
            module: the LightningModule (its epoch, global step and trainer).
            terms: the loss terms of the step by name.
            total: the loss to be back-propagated.
            phase: the step's name (the counter's key).
            batch_idx: the batch index.
        """
        trainer = module.trainer
        any_rank = None
        if trainer.world_size > 1:

            def any_rank(flag: bool) -> bool:
                return bool(trainer.strategy.reduce_boolean_decision(flag, all=False))

        epoch, step = module.current_epoch, module.global_step
        name = check_terms(terms, total, phase, epoch, step, batch_idx, self.mode, any_rank)
        if name is None:
            return False
        self.skipped[phase] = self.skipped.get(phase, 0) + 1
        buffers = {
            k: b for k, b in module.named_buffers() if b.is_floating_point() and b.numel() > 0
        }
        bad = first_nonfinite(buffers)
        elsewhere = any_rank is not None and any_rank(bad is not None) and bad is None
        if bad is not None or elsewhere:
            value = None if bad is None else _value_text(buffers[bad])
            raise NonFiniteLossError(bad, value, phase, epoch, step, batch_idx, buffer=True)
        return True

    def summary(self) -> str | None:
        """One line on the skipped batches (``None`` when none was skipped)."""
        if not self.total:
            return None
        phases = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
        return f"nonfinite: skip skipped {self.total} batches with a non-finite loss ({phases})"

    def state_dict(self) -> dict[str, int]:
        """The skipped-batch counts by phase (stored in the checkpoint)."""
        return dict(self.skipped)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore the counts saved by :meth:`state_dict`."""
        self.skipped = {str(k): int(v) for k, v in state.items()}


class NonFiniteHooks:
    """LightningModule mixin: the guard's counts in every checkpoint, its summary after ``fit``.

    The module creates ``self._nonfinite`` (a :class:`NonFiniteGuard`) in ``__init__``; list the
    mixin before ``LightningModule`` among the bases. Each hook calls ``super()`` first.
    """

    _nonfinite: NonFiniteGuard

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        checkpoint[CHECKPOINT_KEY] = self._nonfinite.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        self._nonfinite.load_state_dict(checkpoint.get(CHECKPOINT_KEY, {}))

    def on_fit_end(self) -> None:
        super().on_fit_end()  # type: ignore[misc]
        summary = self._nonfinite.summary()
        if summary:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(summary)
