"""SegmentationModule: ordinary training and evaluation of any discrete segmentation network.

Callbacks deriving from :class:`~lightning_nas.loss_terms.LossTerm` add their ``weight_loss``
terms to the training loss here too (e.g. distillation from a trained teacher), logged as
``train/loss/<name>``.

A NaN or infinite loss term stops the run with a one-line error, or with ``nonfinite: skip`` the
batch is skipped and counted (:mod:`lightning_nas.finite`).

Used to retrain a derived genotype (``network: lightning_nas.networks.DartsNetwork`` with a
genotype file) or to train a baseline (``network: segmentation_models_pytorch.Unet`` with
``encoder_weights: null``).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from lightning_nas._config import as_factory, drop_module_hparams, missing_callbacks
from lightning_nas._evaluation import SegmentationEvalMixin
from lightning_nas.data.evaluation import multiscale_flip_logits
from lightning_nas.errors import ConfigError
from lightning_nas.finite import LOG_KEY as NONFINITE_LOG_KEY
from lightning_nas.finite import NonFiniteGuard, NonFiniteHooks
from lightning_nas.loss_terms import collect_terms
from lightning_nas.schedules import PolyLR, set_total_iters

DEFAULT_OPTIMIZER: dict[str, Any] = {
    "class_path": "torch.optim.SGD",
    "init_args": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
}
#: Poly lr with power 0.9 over all the training steps (DeepLab, Auto-DeepLab, FasterSeg).
DEFAULT_LR_SCHEDULER: dict[str, Any] = {
    "class_path": "lightning_nas.schedules.PolyLR",
    "init_args": {"power": 0.9},
}


class SegmentationModule(NonFiniteHooks, SegmentationEvalMixin, LightningModule):
    """Train a discrete network with poly (or any) lr, cross-entropy (or an smp loss), mIoU.

    Args:
        network: the network (``class_path`` in YAML); its ``num_classes`` (or smp's
            ``classes``) is linked from the DataModule by the CLI.
        num_classes: number of classes of the metric; inferred from the network when ``None``.
        optimizer: factory of the optimizer (default SGD lr 0.05, momentum 0.9, wd 1e-4).
        lr_scheduler: factory of the lr schedule, called with the optimizer and stepped after
            every training step (``class_path`` in YAML, as ``SearchModule``'s
            ``weight_lr_scheduler``). Default: :class:`~lightning_nas.schedules.PolyLR` with
            power 0.9, lr·(1 − t/T)^0.9 with T = all the training steps (the DeepLab /
            Auto-DeepLab protocol). A schedule built with ``total_iters: null``
            (:class:`~lightning_nas.schedules.PolyLR`, :class:`~lightning_nas.schedules.CosineLR`)
            gets T = ``trainer.estimated_stepping_batches``. ``None``: constant lr.
        loss: a loss module taking ``(logits, target)``, e.g. ``segmentation_models_pytorch.losses.
            DiceLoss`` with ``ignore_index: 255``; default cross-entropy ignoring ``ignore_index``.
        ignore_index: label value ignored by the default loss and the metric.
        eval_window: evaluate (validate / test / predict) with a sliding window of this size
            where the image is larger (``None``: whole image in one pass).
        eval_scales: evaluate at these scales and average the logits (e.g. ``[0.75, 1, 1.25]``).
        eval_flip: also evaluate the horizontally flipped image and average.
        aux_weights: weights of auxiliary losses, for a network with ``forward_aux(x)`` returning
            ``(logits, aux_1, aux_2, ...)`` (e.g. ``FasterSegNetwork``: the 1/16 and 1/32 heads;
            FasterSeg trains with ``[0.2, 0.2]``); a weight without its output (``None``, or
            fewer outputs than weights) is an error. Default ``[]``: the main logits only.
        lr_schedule: deprecated, use ``lr_scheduler``: ``poly`` is
            :class:`~lightning_nas.schedules.PolyLR`, ``cosine``
            :class:`~lightning_nas.schedules.CosineLR`, ``constant`` ``null``. Accepted (with a
            ``DeprecationWarning``) for old configs and checkpoints; not together with a
            non-default ``lr_scheduler``.
        lr_power: deprecated, use ``lr_scheduler``'s ``init_args.power`` (implies ``poly`` when
            ``lr_schedule`` is not given).
        nonfinite: what a NaN or infinite loss term (task, aux, distillation, ...) does.
            ``raise`` (default): stop the run before the backward pass with a one-line
            ``NonFiniteLossError`` naming the term, epoch and step (the checkpoints written so
            far are kept). ``skip``: the batch adds no gradient and, unless other batches of an
            accumulation window do, the optimizer does not step; it is counted
            (``nonfinite_skipped``, logged as ``train/nonfinite_skipped``, kept in the
            checkpoint) and the count is reported at the end of ``fit``. Under DDP all ranks
            decide alike.

    Example:
        >>> import segmentation_models_pytorch as smp
        >>> net = smp.Unet("resnet18", encoder_weights=None, classes=3, encoder_depth=3,
        ...                decoder_channels=(32, 16, 8))
        >>> module = SegmentationModule(net)
        >>> module.num_classes
        3
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int | None = None,
        optimizer: OptimizerCallable = DEFAULT_OPTIMIZER,  # type: ignore[assignment]
        lr_scheduler: LRSchedulerCallable | None = DEFAULT_LR_SCHEDULER,  # type: ignore[assignment]
        loss: nn.Module | None = None,
        ignore_index: int = 255,
        eval_window: int | None = None,
        eval_scales: tuple[float, ...] = (1.0,),
        eval_flip: bool = False,
        aux_weights: tuple[float, ...] = (),
        lr_schedule: Literal["poly", "cosine", "constant"] | None = None,
        lr_power: float | None = None,
        nonfinite: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__()
        self._nonfinite = NonFiniteGuard(nonfinite, "model.nonfinite")
        self.nonfinite = nonfinite
        self._window_has_step = True  # a batch since the last optimizer step was not skipped
        with warnings.catch_warnings():  # modules are dropped from hparams just below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        drop_module_hparams(self)
        self.network = network
        self.num_classes = num_classes or _infer_num_classes(network)
        self._optimizer = as_factory(optimizer, "model.optimizer")
        if lr_schedule is not None or lr_power is not None:
            lr_scheduler = _from_deprecated_keys(lr_schedule, lr_power, lr_scheduler)
        self._lr_scheduler = (
            None if lr_scheduler is None else as_factory(lr_scheduler, "model.lr_scheduler")
        )
        self.criterion = loss
        self.ignore_index = ignore_index
        self.val_miou = MulticlassJaccardIndex(
            num_classes=self.num_classes, ignore_index=ignore_index, average="macro"
        )
        self.test_miou = self.val_miou.clone()
        if not eval_scales or any(x <= 0 for x in eval_scales):
            raise ConfigError(f"model.eval_scales: expected positive scales, got {eval_scales!r}")
        if eval_window is not None and eval_window < 1:
            raise ConfigError(f"model.eval_window: expected a positive size, got {eval_window}")
        self.eval_window = eval_window
        self.eval_scales = tuple(eval_scales)
        self.eval_flip = eval_flip
        self.aux_weights = tuple(float(w) for w in aux_weights)
        if self.aux_weights and not callable(getattr(network, "forward_aux", None)):
            raise ConfigError(
                f"model.aux_weights: {type(network).__name__} has no forward_aux(x) giving "
                "auxiliary outputs; use aux_weights: []"
            )
        if any(w < 0 for w in self.aux_weights):
            raise ConfigError(f"model.aux_weights: expected weights >= 0, got {list(aux_weights)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)`` at the input size."""
        out = self.network(x)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def eval_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Whole-image logits: sliding window and/or multi-scale + flip when configured."""
        if self.eval_window is None and self.eval_scales == (1.0,) and not self.eval_flip:
            return self(image)
        return multiscale_flip_logits(
            self,
            image,
            scales=self.eval_scales,
            flip=self.eval_flip,
            window=self.eval_window,
            num_classes=self.num_classes,
        )  # averaged logits, so that the logged val/test loss stays a cross-entropy

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The training loss."""
        if self.criterion is not None:
            return self.criterion(logits, mask.long())
        return F.cross_entropy(logits, mask.long(), ignore_index=self.ignore_index)

    def _aux_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Main logits and the weighted sum of the auxiliary losses (``None`` without any)."""
        image = batch["image"]
        if not self.aux_weights:
            return self(image), None
        logits, *aux = self.network.forward_aux(image)
        if len(aux) < len(self.aux_weights):
            raise ConfigError(
                f"model.aux_weights: {len(self.aux_weights)} weights, but "
                f"{type(self.network).__name__}.forward_aux gives {len(aux)} auxiliary outputs"
            )
        total = None
        for k, (weight, out) in enumerate(zip(self.aux_weights, aux)):
            if weight == 0:
                continue
            if out is None:
                raise ConfigError(
                    f"model.aux_weights[{k}] = {weight}, but {type(self.network).__name__} has no "
                    f"auxiliary output {k} (e.g. built with aux_heads: false)"
                )
            if out.shape[-2:] != image.shape[-2:]:
                out = F.interpolate(
                    out, size=image.shape[-2:], mode="bilinear", align_corners=False
                )
            term = weight * self.loss(out, batch["mask"])
            total = term if total is None else total + term
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(
                logits, size=image.shape[-2:], mode="bilinear", align_corners=False
            )
        return logits, total

    @property
    def nonfinite_skipped(self) -> dict[str, int]:
        """Batches skipped for a non-finite loss (``nonfinite: skip``), under ``"training"``."""
        return self._nonfinite.state_dict()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if batch_idx % self.trainer.accumulate_grad_batches == 0:  # a new accumulation window
            self._window_has_step = False
        logits, aux = self._aux_loss(batch)
        task = self.loss(logits, batch["mask"])
        terms = collect_terms(self.trainer.callbacks, "weight", self, logits, batch)
        if aux is not None:
            terms = {"aux": aux, **terms}
        loss = task + sum(terms.values()) if terms else task
        bs = batch["image"].shape[0]
        skip = self._nonfinite.check(self, {"task": task, **terms}, loss, "training", batch_idx)
        if self._nonfinite.mode == "skip":
            self.log(NONFINITE_LOG_KEY, float(self._nonfinite.total), batch_size=bs)
        if skip:
            return self._zero_loss()
        self._window_has_step = True
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        if terms:
            self.log("train/loss/task", task.detach(), batch_size=bs)
            for name, value in terms.items():
                self.log(f"train/loss/{name}", value.detach(), batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        return loss

    def _zero_loss(self) -> torch.Tensor:
        """A zero loss with a zero gradient for every trainable parameter.

        Returned for a skipped batch instead of ``None``: Lightning refuses ``None`` from
        ``training_step`` under DDP, whose gradient all-reduce needs a backward pass on every
        rank. ``on_before_optimizer_step`` then drops the gradients unless another batch of
        the accumulation window contributed.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.stack([p.sum() for p in params]).sum() * 0.0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Do not step on a window of skipped batches (momentum and weight decay would)."""
        if not self._window_has_step:
            optimizer.zero_grad(set_to_none=True)

    def configure_callbacks(self) -> list[Callback]:
        """Add :class:`callbacks.ExactResume` unless the user configured one."""
        from callbacks import ExactResume

        return missing_callbacks(self, ExactResume)

    def configure_optimizers(self) -> Any:
        opt = self._optimizer(self.parameters())
        if self._lr_scheduler is None:
            return opt
        sched = self._lr_scheduler(opt)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ConfigError(
                "model.lr_scheduler: ReduceLROnPlateau is not supported (the schedule is stepped "
                "after every training step, without a metric)"
            )
        set_total_iters(sched, max(1, int(self.trainer.estimated_stepping_batches)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _from_deprecated_keys(
    lr_schedule: str | None, lr_power: float | None, lr_scheduler: Any
) -> dict[str, Any] | None:
    """The ``lr_scheduler`` that the old ``lr_schedule`` / ``lr_power`` keys mean."""
    schedule = "poly" if lr_schedule is None else lr_schedule
    if schedule not in ("poly", "cosine", "constant"):
        raise ConfigError(
            f"model.lr_schedule: expected poly, cosine or constant, got {lr_schedule!r}"
        )
    if not _is_default_schedule(lr_scheduler):
        given = ", ".join(
            f"model.{key}={value!r}"
            for key, value in (("lr_schedule", lr_schedule), ("lr_power", lr_power))
            if value is not None
        )
        raise ConfigError(
            f"{given} (deprecated) and model.lr_scheduler are both given; expected only "
            "model.lr_scheduler (e.g. {class_path: lightning_nas.schedules.PolyLR, init_args: "
            "{power: 0.9}})"
        )
    power = 0.9 if lr_power is None else lr_power
    new: dict[str, Any] | None
    if schedule == "poly":
        new = {"class_path": "lightning_nas.schedules.PolyLR", "init_args": {"power": power}}
        yaml = f"{{class_path: lightning_nas.schedules.PolyLR, init_args: {{power: {power}}}}}"
    elif schedule == "cosine":
        new = {"class_path": "lightning_nas.schedules.CosineLR"}
        yaml = "{class_path: lightning_nas.schedules.CosineLR}"
    else:
        new, yaml = None, "null"
    warnings.warn(
        "model.lr_schedule and model.lr_power are deprecated; write "
        f"model.lr_scheduler: {yaml} instead (lr_schedule: {schedule}"
        + ("" if lr_power is None else f", lr_power: {lr_power}")
        + ")",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


def _is_default_schedule(lr_scheduler: Any) -> bool:
    """Whether ``lr_scheduler`` builds the default schedule (whatever form it was given in).

    Under the CLI and ``load_from_checkpoint`` the default arrives as a callable made by
    jsonargparse, so it is compared by what it builds.
    """
    if lr_scheduler is DEFAULT_LR_SCHEDULER:
        return True
    if lr_scheduler is None:
        return False
    try:
        sched = as_factory(lr_scheduler, "model.lr_scheduler")(
            torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        )
    except Exception:  # anything it cannot build is not the default
        return False
    return (
        type(sched) is PolyLR
        and sched.power == DEFAULT_LR_SCHEDULER["init_args"]["power"]
        and sched.total_iters is None
        and sched.last_epoch == 0
    )


def _infer_num_classes(network: nn.Module) -> int:
    for attr in ("num_classes", "classes"):
        value = getattr(network, attr, None)
        if isinstance(value, int):
            return value
    head = getattr(network, "segmentation_head", None)
    if head is not None:
        convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
        if convs:
            return convs[-1].out_channels
    raise ConfigError(
        f"cannot infer num_classes of {type(network).__name__}: pass model.init_args.num_classes"
    )
