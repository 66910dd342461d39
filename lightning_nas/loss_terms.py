"""The loss-term protocol: how callbacks add terms to the search losses.

A callback that derives from :class:`LossTerm` may contribute a term to the weight loss (the
step on ``trainA``) and/or to the architecture loss (the step on ``trainB``). The search module
finds every such callback in ``trainer.callbacks``, adds its terms and logs each one as
``train/weight_loss/<name>`` or ``train/arch_loss/<name>``. A callback returns ``None`` for a
term it does not contribute; an absent callback adds nothing.

This keeps the search module free of latency, distillation or any other regulariser: they are
callbacks (``callbacks.LatencyRegularization``, ``callbacks.Distillation``).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule


class LossTerm(Callback):
    """A callback that contributes terms to the weight and/or architecture loss.

    Subclasses override :meth:`weight_loss` and/or :meth:`arch_loss`. ``name`` is the log key
    suffix (defaults to the class name).

    The methods may be called more than once per training step — the second-order search
    evaluates the training loss three extra times (virtual step and the two finite-difference
    points) — so they must be pure functions of their arguments and the current step: update any
    state (an adaptive weight, a running statistic) in a hook such as ``on_train_batch_end``,
    never inside ``weight_loss`` / ``arch_loss``.

    Example:
        >>> import torch
        >>> class L1OnLogits(LossTerm):
        ...     def arch_loss(self, module, logits, batch):
        ...         return 0.1 * logits.abs().mean()
        >>> term = L1OnLogits()
        >>> term.name
        'L1OnLogits'
        >>> round(float(term.arch_loss(None, torch.ones(1, 2, 2, 2), None)), 6)
        0.1
    """

    @property
    def name(self) -> str:
        """The name the term is logged under."""
        return type(self).__name__

    def weight_loss(
        self, module: LightningModule, logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor | None:
        """Term added to the weight loss of this step (``None``: no term)."""
        return None

    def arch_loss(
        self, module: LightningModule, logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor | None:
        """Term added to the architecture loss of this step (``None``: no term)."""
        return None


def collect_terms(
    callbacks: list[Callback],
    phase: str,
    module: LightningModule,
    logits: torch.Tensor,
    batch: dict[str, Any],
) -> dict[str, torch.Tensor]:
    """Ask every :class:`LossTerm` in ``callbacks`` for its term of ``phase``.

    Args:
        callbacks: the trainer's callbacks (others are ignored).
        phase: ``"weight"`` or ``"arch"``.
        module: the module computing the loss.
        logits: the network output on ``batch``.
        batch: the batch the loss is computed on.

    Returns:
        The terms by name, in callback order; callbacks returning ``None`` are left out.
    """
    if phase not in ("weight", "arch"):
        raise ValueError(f"phase must be 'weight' or 'arch', got {phase!r}")
    terms: dict[str, torch.Tensor] = {}
    for cb in callbacks:
        if not isinstance(cb, LossTerm):
            continue
        fn = cb.weight_loss if phase == "weight" else cb.arch_loss
        term = fn(module, logits, batch)
        if term is None:
            continue
        name = cb.name
        if name in terms:
            raise ValueError(f"two loss-term callbacks share the name {name!r}; rename one")
        terms[name] = term
    return terms
