"""Distillation: a frozen teacher's soft predictions as an extra term of the weight loss.

FasterSeg trains its student with ``nn.KLDivLoss()(log softmax(s), softmax(t))`` added to the
OHEM losses (weight 1): the KL averaged over every element of the ``(N, K, H, W)`` logits, i.e.
the per-pixel KL divided by the number of classes K (``reduction="mean"``, the default here).
Here the term comes from a callback through the
:class:`~lightning_nas.loss_terms.LossTerm` protocol, so it works for
:class:`~lightning_nas.segmentation.SegmentationModule` (retrain) and
:class:`~lightning_nas.search.SearchModule` alike. The maths is :func:`distillation_kl`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

from lightning_nas.errors import ConfigError
from lightning_nas.loss_terms import LossTerm
from lightning_nas.weights import load_weights

__all__ = ["CoSearchTeacher", "Distillation", "distillation_kl"]


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    valid: torch.Tensor | None = None,
    reduction: Literal["mean", "pixel"] = "mean",
) -> torch.Tensor:
    """``KL(softmax(t/T) ‖ softmax(s/T)) · T²``, averaged.

    ``reduction="mean"`` (FasterSeg's ``nn.KLDivLoss()``, ``train/train.py``): the mean over
    every element of ``(N, K, H, W)``, i.e. the per-pixel KL / K. ``"pixel"``: the KL summed over
    the classes and averaged over the pixels (K times larger). ``valid`` restricts the average
    to some pixels.

    Args:
        student_logits: ``(N, K, H, W)``.
        teacher_logits: ``(N, K, H, W)``; no gradient flows into it.
        temperature: T > 0.
        valid: Optional ``(N, H, W)`` boolean mask of the pixels to average over.
        reduction: ``"mean"`` (the release) or ``"pixel"``.

    Returns:
        A scalar tensor (0 when no pixel is valid, still attached to the student's graph).

    Example:
        >>> s = torch.tensor([[[[0.0]], [[0.0]]]])          # (1, 2, 1, 1): uniform
        >>> t = torch.tensor([[[[2.0]], [[0.0]]]])
        >>> round(float(distillation_kl(s, t, reduction="pixel")), 4)  # log 2 − H(sigmoid(2))
        0.3278
        >>> round(float(distillation_kl(s, t)), 4)          # ... / K, K = 2
        0.1639
        >>> float(distillation_kl(t, t))
        0.0
    """
    if reduction not in ("mean", "pixel"):
        raise ValueError(f"distillation: reduction must be 'mean' or 'pixel', got {reduction!r}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"distillation: student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ (same number of classes needed)"
        )
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(dim=1)  # (N, H, W)
    if valid is not None:
        kl = kl[valid]
        if kl.numel() == 0:
            return student_logits.sum() * 0.0
    scale = temperature**2 / (student_logits.shape[1] if reduction == "mean" else 1)
    return kl.mean() * scale


def _load_weights(network: nn.Module, path: str) -> None:
    try:
        load_weights(network, path)
    except FileNotFoundError:
        raise ConfigError(f"Distillation: teacher_weights file {path} not found") from None
    except ConfigError as err:
        raise ConfigError(f"Distillation: teacher {err}") from None


@runtime_checkable
class CoSearchTeacher(Protocol):
    """A search space that co-searches its own teacher (FasterSeg with ``teacher: true``)."""

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits on ``x``, detached."""
        ...


class Distillation(LossTerm):
    """Add ``weight · KL(teacher ‖ student)`` (per pixel, temperature T) to the weight loss.

    Where the teacher comes from (in this order):

    * ``teacher_checkpoint``: a :class:`~lightning_nas.segmentation.SegmentationModule`
      checkpoint, read with ``load_from_checkpoint`` (a checkpoint written by the CLI rebuilds
      its network from its saved config; for one written from Python give the network as
      ``teacher`` too, which is passed as ``network=``);
    * ``teacher`` (a network, e.g. ``lightning_nas.networks.DartsNetwork`` with the teacher's
      ``genotype`` file, as ``class_path`` in YAML), with its trained weights from
      ``teacher_weights`` (a ``state_dict`` file or a SegmentationModule checkpoint);
    * neither: co-search. The module's search space must provide ``teacher_logits(x)`` (e.g.
      FasterSeg's supernet, whose teacher and student share one supernet); its output is
      detached, so the term trains the student only.

    An external teacher is frozen (``requires_grad=False``, eval mode), moved to the module's
    device at fit start and called under ``torch.no_grad()``; it is not part of the module, so it
    is neither optimised nor saved in the student's checkpoints. Its logits are resized to the
    student's if they differ. By default every pixel counts, as in the release (the teacher's
    soft labels exist everywhere); with ``ignore_index`` set, pixels with that label are left
    out of the average.

    The module logs the term as ``train/loss/Distillation`` (retrain) or
    ``train/weight_loss/Distillation`` (search).

    Args:
        teacher_checkpoint: Path of the teacher's SegmentationModule checkpoint.
        teacher: The teacher network (with ``teacher_weights``, or already trained).
        teacher_weights: Path of the teacher network's weights.
        weight: Weight of the term (FasterSeg: 1, with ``reduction: mean``).
        temperature: Softmax temperature T (the term is multiplied by T²).
        ignore_index: Label value whose pixels are excluded; ``None`` (default, the release):
            every pixel counts.
        reduction: ``"mean"`` (default, the release's ``nn.KLDivLoss()``: mean over classes
            and pixels) or ``"pixel"`` (KL summed over classes, mean over pixels: K times the
            release's term at the same weight). See :func:`distillation_kl`.
        phases: The search losses the term is added to: ``["weight"]`` (default; retraining
            has only this one) and/or ``"arch"`` (FasterSeg's co-search distils into the
            student's architecture loss too).
        start_epoch: Add nothing before this epoch; ``None``: the module's
            ``arch_start_epoch`` (FasterSeg's co-search: the teacher is trained from scratch
            alongside, so distil once the supernet pre-training is over).

    Raises:
        ConfigError: If the arguments are inconsistent or out of range (at construction), or the
            teacher cannot be loaded (at setup).

    Example:
        >>> import torch
        >>> teacher = torch.nn.Conv2d(3, 4, 1)
        >>> cb = Distillation(teacher=teacher, weight=1.0, temperature=2.0)
        >>> cb.name
        'Distillation'
    """

    def __init__(
        self,
        teacher_checkpoint: str | None = None,
        teacher: nn.Module | None = None,
        teacher_weights: str | None = None,
        weight: float = 1.0,
        temperature: float = 1.0,
        ignore_index: int | None = None,
        phases: tuple[str, ...] = ("weight",),
        start_epoch: int | None = 0,
        reduction: Literal["mean", "pixel"] = "mean",
    ) -> None:
        if teacher_weights is not None and teacher is None:
            raise ConfigError("Distillation: teacher_weights needs the teacher network (teacher)")
        if teacher_weights is not None and teacher_checkpoint is not None:
            raise ConfigError("Distillation: give teacher_checkpoint or teacher_weights, not both")
        if not weight >= 0:
            raise ConfigError(f"Distillation: weight must be >= 0, got {weight!r}")
        if not temperature > 0:
            raise ConfigError(f"Distillation: temperature must be > 0, got {temperature!r}")
        phases = tuple(phases)
        if not phases or any(p not in ("weight", "arch") for p in phases):
            raise ConfigError(
                "Distillation: phases must be a non-empty list of 'weight' / 'arch', got "
                f"{phases!r}"
            )
        self.phases = phases
        if reduction not in ("mean", "pixel"):
            raise ConfigError(
                f"Distillation: reduction must be 'mean' or 'pixel', got {reduction!r}"
            )
        self.reduction = reduction
        if start_epoch is not None and (
            isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0
        ):
            raise ConfigError(
                f"Distillation: start_epoch must be an integer >= 0 or null, got {start_epoch!r}"
            )
        self.start_epoch = start_epoch
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_weights = teacher_weights
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.ignore_index = ignore_index
        self.teacher: nn.Module | None = teacher
        self._loaded = teacher is not None and teacher_weights is None and not teacher_checkpoint
        self._memo: tuple[torch.Tensor, torch.Tensor] | None = None
        if self._loaded:
            self._freeze()

    # ----------------------------------------------------------------- teacher
    def _freeze(self) -> None:
        assert self.teacher is not None
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _load_teacher(self) -> None:
        if self.teacher_checkpoint is not None:
            from lightning_nas.segmentation import SegmentationModule

            if not Path(self.teacher_checkpoint).is_file():
                raise ConfigError(
                    f"Distillation: teacher_checkpoint {self.teacher_checkpoint} not found"
                )
            extra = {} if self.teacher is None else {"network": self.teacher}
            self.teacher = SegmentationModule.load_from_checkpoint(
                self.teacher_checkpoint, map_location="cpu", weights_only=True, **extra
            )
        elif self.teacher is not None and self.teacher_weights is not None:
            _load_weights(self.teacher, self.teacher_weights)
        self._freeze()
        self._loaded = True

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.teacher is None and self.teacher_checkpoint is None:
            space = getattr(pl_module, "space", None)
            if not isinstance(space, CoSearchTeacher):
                raise ConfigError(
                    "Distillation: no teacher given (teacher_checkpoint, or teacher with "
                    f"teacher_weights) and {type(pl_module).__name__} has no search space with a "
                    "teacher_logits(x) method (co-search)"
                )
            return
        if not self._loaded:
            self._load_teacher()

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.teacher is not None:
            self.teacher.to(pl_module.device)
            self._freeze()

    def teacher_logits(self, module: pl.LightningModule, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits on ``images`` (no gradient).

        Memoised for the current images, since the loss terms may be evaluated several times per
        step (second-order search).
        """
        if self._memo is not None and self._memo[0] is images:
            return self._memo[1]
        with torch.no_grad():
            if self.teacher is not None:
                logits = self.teacher(images)
            else:
                logits = module.space.teacher_logits(images)  # type: ignore[union-attr]
        logits = logits.detach()
        self._memo = (images, logits)
        return logits

    # ----------------------------------------------------------------- loss term
    @override
    def weight_loss(
        self, module: pl.LightningModule, logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor | None:
        return self._term(module, logits, batch) if "weight" in self.phases else None

    @override
    def arch_loss(
        self, module: pl.LightningModule, logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor | None:
        return self._term(module, logits, batch) if "arch" in self.phases else None

    def _term(
        self, module: pl.LightningModule, logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor | None:
        start = self.start_epoch
        if start is None:
            start = getattr(module, "arch_start_epoch", 0)
        if start and module.current_epoch < start:
            return None
        teacher = self.teacher_logits(module, batch["image"])
        if teacher.shape[-2:] != logits.shape[-2:]:
            teacher = F.interpolate(
                teacher, size=logits.shape[-2:], mode="bilinear", align_corners=False
            )
        valid = None
        mask = batch.get("mask")
        if self.ignore_index is not None and mask is not None:
            if mask.shape[-2:] != logits.shape[-2:]:
                mask = F.interpolate(mask[:, None].float(), size=logits.shape[-2:], mode="nearest")
                mask = mask[:, 0]
            valid = mask.long() != self.ignore_index
        return self.weight * distillation_kl(
            logits, teacher.to(logits.dtype), self.temperature, valid, self.reduction
        )

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._memo = None
