"""Learning-rate schedules whose length can be left to the trainer.

``total_iters=None`` means "every training step":
:class:`~lightning_nas.segmentation.SegmentationModule` sets it to
``trainer.estimated_stepping_batches`` when it builds the schedule (:func:`set_total_iters`), so
a YAML file names the schedule without knowing the dataset's size or the number of epochs::

    lr_scheduler:
      class_path: lightning_nas.schedules.PolyLR
      init_args: {power: 0.9}            # total_iters: null = all the training steps

Both are torch's own schedules (same arithmetic), with that one default added.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, PolynomialLR

from lightning_nas.errors import ConfigError

__all__ = ["CosineLR", "PolyLR", "set_total_iters"]


def _check_length(scheduler: Any) -> None:
    if scheduler.total_iters is None and scheduler.last_epoch > 0:  # step 0 needs no length
        raise ConfigError(
            f"{type(scheduler).__name__}: total_iters is null and nothing set it; "
            "SegmentationModule sets it to all the training steps, elsewhere give total_iters"
        )


class PolyLR(PolynomialLR):
    """DeepLab's poly schedule: ``lr = lr0 · (1 − t / total_iters) ** power``, then constant.

    :class:`torch.optim.lr_scheduler.PolynomialLR` with ``power`` 0.9 and the length left to the
    trainer by default.

    Args:
        optimizer: the optimizer whose learning rates it sets.
        power: the exponent (DeepLab, Auto-DeepLab, FasterSeg: 0.9).
        total_iters: steps until the lr reaches 0; ``None``: all the training steps, set by
            :class:`~lightning_nas.segmentation.SegmentationModule` (elsewhere give it).
        last_epoch: index of the last step (``-1``: start).

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = PolyLR(opt, power=1.0, total_iters=4)
        >>> for _ in range(2):
        ...     opt.step()
        ...     sched.step()
        >>> opt.param_groups[0]["lr"]
        0.5
    """

    def __init__(
        self,
        optimizer: Optimizer,
        power: float = 0.9,
        total_iters: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        super().__init__(optimizer, total_iters=total_iters, power=power, last_epoch=last_epoch)  # type: ignore[arg-type]

    def get_lr(self) -> list[Any]:
        """The learning rates of the current step."""
        _check_length(self)
        return super().get_lr()


class CosineLR(CosineAnnealingLR):
    """Cosine annealing from ``lr0`` to ``eta_min`` over ``total_iters`` steps.

    :class:`torch.optim.lr_scheduler.CosineAnnealingLR` with ``T_max`` named ``total_iters`` and
    left to the trainer by default.

    Args:
        optimizer: the optimizer whose learning rates it sets.
        total_iters: steps from ``lr0`` to ``eta_min`` (``T_max``); ``None``: all the training
            steps, set by :class:`~lightning_nas.segmentation.SegmentationModule`.
        eta_min: the final learning rate.
        last_epoch: index of the last step (``-1``: start).

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = CosineLR(opt, total_iters=4)
        >>> for _ in range(2):
        ...     opt.step()
        ...     sched.step()
        >>> round(opt.param_groups[0]["lr"], 6)
        0.5
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_iters: int | None = None,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        super().__init__(optimizer, T_max=total_iters, eta_min=eta_min, last_epoch=last_epoch)  # type: ignore[arg-type]

    @property
    def total_iters(self) -> int | None:
        """The length of the schedule (torch's ``T_max``)."""
        return self.T_max

    @total_iters.setter
    def total_iters(self, value: int | None) -> None:
        self.T_max = value  # type: ignore[assignment]

    def get_lr(self) -> list[Any]:
        """The learning rates of the current step."""
        _check_length(self)
        return super().get_lr()


def set_total_iters(scheduler: LRScheduler, total_iters: int) -> None:
    """Give a schedule built with ``total_iters=None`` its length; leave any other one alone.

    Args:
        scheduler: a freshly built schedule (e.g. :class:`PolyLR`, :class:`CosineLR`).
        total_iters: its length, e.g. ``trainer.estimated_stepping_batches``.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = PolyLR(opt)
        >>> set_total_iters(sched, 100)
        >>> sched.total_iters
        100
    """
    if getattr(scheduler, "total_iters", 0) is None:
        scheduler.total_iters = total_iters  # type: ignore[attr-defined]
