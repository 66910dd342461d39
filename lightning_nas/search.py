"""SearchModule: the bi-level optimisation of a search space, with manual dual optimizers.

Each training step receives one batch from ``trainA`` and one from ``trainB`` (the DataModule in
search mode returns ``{"weights": loader_A, "arch": loader_B}``) and runs

* phase 1 — architecture step on the ``trainB`` batch (from ``arch_start_epoch`` on), with a
  first-order gradient ∇_α L_val(w, α) (the weights frozen meanwhile, so no weight gradient is
  computed; not under DDP) or the second-order unrolled gradient
  (:func:`lightning_nas.bilevel.unrolled_arch_gradient`);
* phase 2 — weight step on the ``trainA`` batch, with gradient clipping.

Extra loss terms come from callbacks that implement :class:`lightning_nas.loss_terms.LossTerm`.

DDP: the module runs under plain ``strategy: ddp``. Every parameter of a DARTS-style supernet is
used in every forward, so each ``manual_backward`` all-reduces the gradients of weights and
architecture parameters alike, and the architecture parameters — ordinary registered
``nn.Parameter``s, broadcast by DDP at start — receive identical averaged gradients and stay
identical on every rank. Both optimizers' gradients are zeroed before each backward instead of
toggling optimizers (toggling under plain DDP leaves parameters without gradients, which DDP
rejects). The second-order path computes its gradients with ``torch.autograd.grad``, which DDP does
not reduce: they are averaged over ranks explicitly (``all_reduce``) before use.

Resume: both optimizers, both schedulers, the architecture parameters and BatchNorm statistics are
in the checkpoint; with a seed, the global RNGs are reseeded with ``seed + epoch`` at the start of
every epoch, so the data order, the augmentations and any sampling of an epoch depend only on the
epoch. :class:`callbacks.ExactResume` (added unless configured) also saves the global random
generators, and the DataModules' training loaders save their position in the epoch, so a search
resumed with ``--ckpt_path`` from any checkpoint, also one saved between two batches
(``ModelCheckpoint(every_n_train_steps=N)``), is bit-identical to an uninterrupted one
(docs/resume.md says what is exact and what is not).

AMP: gradients are clipped in ``on_before_optimizer_step``, after the precision plugin has
unscaled them. The second-order path sets gradients by hand and is refused under ``16-mixed``.

Non-finite losses (:mod:`lightning_nas.finite`): each phase's terms are checked before its
backward pass (second order: after the unrolled gradient, which leaves the weights as they were).
``nonfinite: raise`` stops the run with a one-line error; ``nonfinite: skip`` skips that phase's
optimizer step and counts it, per phase, in the checkpoint.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics.classification import MulticlassJaccardIndex

from lightning_nas._config import as_factory, drop_module_hparams, missing_callbacks
from lightning_nas._evaluation import SegmentationEvalMixin
from lightning_nas.bilevel import unrolled_arch_gradient, weights_frozen
from lightning_nas.errors import ConfigError
from lightning_nas.finite import LOG_KEY as NONFINITE_LOG_KEY
from lightning_nas.finite import NonFiniteGuard, NonFiniteHooks
from lightning_nas.genotypes import Genotype
from lightning_nas.loss_terms import collect_terms
from lightning_nas.resume import MID_EPOCH_KEY  # noqa: F401  (re-exported, older imports)
from lightning_nas.spaces.base import SearchSpace

# The module's defaults are DARTS' recipe (``train_search.py``: SGD 0.025 / 0.9 / 3e-4 with cosine
# to 0.001; Adam 3e-4, betas (0.5, 0.999), wd 1e-3), stated here once and repeated by
# experiments/darts.yaml. Every other method's YAML states its own recipe in full (the table in
# docs/search.md and docs/fidelity.md lists them side by side).
DEFAULT_WEIGHT_OPTIMIZER: dict[str, Any] = {
    "class_path": "torch.optim.SGD",
    "init_args": {"lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4},
}
DEFAULT_WEIGHT_LR_SCHEDULER: dict[str, Any] = {
    "class_path": "torch.optim.lr_scheduler.CosineAnnealingLR",
    "init_args": {"T_max": 50, "eta_min": 0.001},
}
DEFAULT_ARCH_OPTIMIZER: dict[str, Any] = {
    "class_path": "torch.optim.Adam",
    "init_args": {"lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3},
}


class SearchModule(NonFiniteHooks, SegmentationEvalMixin, LightningModule):
    """Differentiable architecture search of a :class:`~lightning_nas.spaces.base.SearchSpace`.

    Args:
        space: the supernet to search (``class_path`` in YAML). Its ``num_classes`` is linked
            from the DataModule by the CLI.
        weight_optimizer: factory of the weight optimizer, called with the weight parameters
            (default: SGD lr 0.025, momentum 0.9, weight decay 3e-4, as DARTS).
        weight_lr_scheduler: factory of the weight-lr schedule, stepped once per epoch
            (default: cosine to 0.001 over ``T_max`` = 50 epochs; set ``T_max`` to
            ``trainer.max_epochs``). ``None``: constant lr.
        arch_optimizer: factory of the architecture optimizer, called with the architecture
            parameters (default: DARTS' Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3;
            Auto-DeepLab's and FasterSeg's recipes set their own in their YAML).
        arch_lr_scheduler: optional factory of an architecture-lr schedule, stepped per epoch.
        arch_start_epoch: epochs of weight-only warm-up before architecture updates begin.
        unrolled: ``False`` — first-order architecture gradient; ``True`` — second order
            (virtual SGD step and finite-difference Hessian-vector product). Needs SGD weights.
            For a stochastic space (sampled widths or paths) the three training-loss calls of
            the step see one frozen sample, so the finite difference compares one subnetwork.
        gradient_clip_val: max L2 norm of the weight gradients (``None`` or 0: no clipping).
        arch_gradient_clip_val: max L2 norm of the architecture gradients (``None``: none).
        ignore_index: label value ignored by the loss and the metric.
        epoch_seed: reseed the global RNGs with ``epoch_seed + epoch`` at each epoch start.
            ``None`` (default) uses the ``seed_everything`` value (the CLI's
            ``seed_everything: 0``) when one was set, and otherwise does not reseed (a resumed
            search is then not bit-identical).
        nonfinite: what a NaN or infinite loss term (task, latency, distillation, ...) does.
            ``raise`` (default): stop the run before the backward pass with a one-line
            ``NonFiniteLossError`` naming the term, the phase, epoch and step (the checkpoints
            written so far are kept). ``skip``: skip that phase's backward pass and optimizer
            step, count it (``nonfinite_skipped``, logged as ``train/nonfinite_skipped``, kept in
            the checkpoint) and warn with the count at the end of ``fit``. Under DDP all ranks
            decide alike.

    Example:
        >>> from lightning_nas.methods.darts.space import DartsSpace
        >>> module = SearchModule(DartsSpace(num_classes=3, C=4, layers=3))
        >>> sorted(module.arch_parameters())
        ['alphas_normal', 'alphas_reduce']
    """

    def __init__(
        self,
        space: SearchSpace,
        weight_optimizer: OptimizerCallable = DEFAULT_WEIGHT_OPTIMIZER,  # type: ignore[assignment]
        weight_lr_scheduler: LRSchedulerCallable | None = DEFAULT_WEIGHT_LR_SCHEDULER,  # type: ignore[assignment]
        arch_optimizer: OptimizerCallable = DEFAULT_ARCH_OPTIMIZER,  # type: ignore[assignment]
        arch_lr_scheduler: LRSchedulerCallable | None = None,
        arch_start_epoch: int = 0,
        unrolled: bool = False,
        gradient_clip_val: float | None = 5.0,
        arch_gradient_clip_val: float | None = None,
        ignore_index: int = 255,
        epoch_seed: int | None = None,
        nonfinite: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__()
        if not isinstance(space, SearchSpace):
            raise ConfigError(
                "model.space: expected a lightning_nas.spaces.base.SearchSpace, got "
                f"{type(space).__name__}"
            )
        if arch_start_epoch < 0:
            raise ConfigError(f"model.arch_start_epoch: expected >= 0, got {arch_start_epoch}")
        for key, value in (
            ("gradient_clip_val", gradient_clip_val),
            ("arch_gradient_clip_val", arch_gradient_clip_val),
        ):
            if value is not None and value < 0:
                raise ConfigError(f"model.{key}: expected >= 0 or null, got {value}")
        self._nonfinite = NonFiniteGuard(nonfinite, "model.nonfinite")
        with warnings.catch_warnings():  # modules are dropped from hparams just below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        drop_module_hparams(self)
        self.space = space
        self.nonfinite = nonfinite
        self.automatic_optimization = False
        self._weight_optimizer = as_factory(weight_optimizer, "model.weight_optimizer")
        self._arch_optimizer = as_factory(arch_optimizer, "model.arch_optimizer")
        self._weight_sched = (
            None
            if weight_lr_scheduler is None
            else as_factory(weight_lr_scheduler, "model.weight_lr_scheduler")
        )
        self._arch_sched = (
            None
            if arch_lr_scheduler is None
            else as_factory(arch_lr_scheduler, "model.arch_lr_scheduler")
        )
        self.arch_start_epoch = arch_start_epoch
        self.unrolled = unrolled
        self.gradient_clip_val = gradient_clip_val
        self.arch_gradient_clip_val = arch_gradient_clip_val
        self.ignore_index = ignore_index
        self.epoch_seed = epoch_seed
        self.val_miou = MulticlassJaccardIndex(
            num_classes=space.num_classes, ignore_index=ignore_index, average="macro"
        )
        self.test_miou = self.val_miou.clone()

    # ----------------------------------------------------------------- public API
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the supernet, ``(N, num_classes, H, W)``."""
        return self.space(x)

    def arch_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The architecture parameters of the space, by name."""
        return self.space.arch_parameters()

    def weight_parameters(self) -> list[torch.nn.Parameter]:
        """The weights of the space (every parameter that is not an architecture parameter)."""
        return list(self.space.weight_parameters())

    def derive(self) -> Genotype:
        """The discrete architecture the current architecture parameters encode."""
        return self.space.derive()

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixel-wise cross-entropy, ``ignore_index`` ignored."""
        return F.cross_entropy(logits, mask.long(), ignore_index=self.ignore_index)

    def extra_genotypes(self) -> dict[str, Genotype]:
        """The space's further derived architectures (e.g. FasterSeg's teacher), by name."""
        return self.space.extra_genotypes()

    @property
    def nonfinite_skipped(self) -> dict[str, int]:
        """Steps skipped for a non-finite loss (``nonfinite: skip``), by phase."""
        return self._nonfinite.state_dict()

    # ----------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        weights = self.weight_parameters()
        alphas = list(self.arch_parameters().values())
        if not alphas:
            raise ConfigError(f"{type(self.space).__name__}.arch_parameters() returned nothing")
        w_opt = self._weight_optimizer(weights)
        a_opt = self._arch_optimizer(alphas)
        if self.unrolled and not isinstance(w_opt, torch.optim.SGD):
            raise ConfigError(
                "model.unrolled: true needs an SGD weight_optimizer (the virtual step is an SGD "
                f"step), got {type(w_opt).__name__}"
            )
        if self.unrolled:
            group = w_opt.param_groups[0]
            if group.get("nesterov") or group.get("dampening"):
                raise ConfigError(
                    "model.unrolled: true supports plain momentum SGD; the weight optimizer has "
                    f"nesterov={group.get('nesterov')}, dampening={group.get('dampening')}"
                )
        schedulers = []
        for key, factory, opt in (
            ("weight_lr_scheduler", self._weight_sched, w_opt),
            ("arch_lr_scheduler", self._arch_sched, a_opt),
        ):
            if factory is None:
                continue
            sched = factory(opt)
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                raise ConfigError(
                    f"model.{key}: ReduceLROnPlateau is not supported by the search (schedules are "
                    "stepped once per epoch without a metric); use an epoch-wise schedule"
                )
            schedulers.append(sched)
        return [w_opt, a_opt], schedulers

    def _schedulers(self) -> list[Any]:
        scheds = self.lr_schedulers()
        if scheds is None:
            return []
        return list(scheds) if isinstance(scheds, list) else [scheds]

    def on_fit_start(self) -> None:
        sched = self._weight_sched_obj()
        max_epochs = self.trainer.max_epochs
        if sched is not None and hasattr(sched, "T_max") and max_epochs not in (None, -1):
            if sched.T_max != max_epochs:
                rank_zero_warn(
                    f"model.weight_lr_scheduler.init_args.T_max={sched.T_max} differs from "
                    f"trainer.max_epochs={max_epochs}: the cosine schedule will not end at eta_min"
                )

    def _weight_sched_obj(self) -> Any:
        return (
            self._schedulers()[0] if self._weight_sched is not None and self._schedulers() else None
        )

    def _effective_seed(self) -> int | None:
        if self.epoch_seed is not None:
            return self.epoch_seed
        global_seed = os.environ.get("PL_GLOBAL_SEED")
        return int(global_seed) if global_seed is not None else None

    def on_train_start(self) -> None:
        if self.unrolled and "16" in str(self.trainer.precision):
            raise ConfigError(
                f"model.unrolled: true is not supported with trainer.precision="
                f"{self.trainer.precision!r} (hand-set gradients bypass the grad scaler); use 32 "
                "or bf16-mixed"
            )

    def on_train_epoch_start(self) -> None:
        seed = self._effective_seed()
        if seed is not None:
            s = seed + self.current_epoch
            random.seed(s)
            np.random.seed(s % 2**32)
            torch.manual_seed(s)
        # epoch-wise schedules, brought to the current epoch (idempotent, so resuming from a
        # checkpoint saved at any point of an epoch never steps twice)
        for sched in self._schedulers():
            while sched.last_epoch < self.current_epoch:
                sched.step()

    # ----------------------------------------------------------------- training
    def _loss_with_terms(
        self, batch: dict[str, Any], phase: str
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.space.set_phase(phase)
        output = self.space(batch["image"])
        loss = self.space.search_loss(output, batch["mask"], self.ignore_index)
        logits = self.space.output_logits(output)
        terms = collect_terms(self.trainer.callbacks, phase, self, logits, batch)
        total = loss + sum(terms.values()) if terms else loss
        return total, {"task": loss, **terms}

    @staticmethod
    def _split_batch(batch: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(batch, Mapping) or not {"weights", "arch"} <= set(batch):
            raise ValueError(
                "SearchModule needs a trainA and a trainB batch per step: use a DataModule in "
                "search mode (data.init_args.search: true), whose train_dataloader returns "
                "{'weights': loader_A, 'arch': loader_B}; got a batch with keys "
                f"{sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__}"
            )
        return batch["weights"], batch["arch"]

    def _zero_grads(self, *optimizers: Any) -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        w_batch, a_batch = self._split_batch(batch)
        w_opt, a_opt = self.optimizers()
        bs = w_batch["image"].shape[0]

        # phase 1: architecture step on trainB (a non-finite loss raises, or skips the step)
        if self.current_epoch >= self.arch_start_epoch:
            self._zero_grads(w_opt, a_opt)
            if self.unrolled:
                a_loss, a_terms, checked = self._unrolled_step(w_batch, a_batch, w_opt)
                skip = self._nonfinite.check(self, checked, a_loss, "arch", batch_idx)
            else:  # without weight gradients (discarded anyway) unless DDP needs them
                with weights_frozen(self.weight_parameters(), self._freeze_weights_in_arch_pass()):
                    a_loss, a_terms = self._loss_with_terms(a_batch, "arch")
                    skip = self._nonfinite.check(self, a_terms, a_loss, "arch", batch_idx)
                    if not skip:
                        self.manual_backward(a_loss)
            if skip:
                self._zero_grads(w_opt, a_opt)
            else:
                a_opt.step()  # clipped in on_before_optimizer_step
                self.log("train/arch_loss", a_loss.detach(), prog_bar=True, batch_size=bs)
                for name, value in a_terms.items():
                    self.log(f"train/arch_loss/{name}", value.detach(), batch_size=bs)

        # phase 2: weight step on trainA
        self._zero_grads(w_opt, a_opt)
        w_loss, w_terms = self._loss_with_terms(w_batch, "weight")
        skip = self._nonfinite.check(self, w_terms, w_loss, "weight", batch_idx)
        if skip:
            self._zero_grads(w_opt, a_opt)
        else:
            self.manual_backward(w_loss)
            w_opt.step()  # clipped in on_before_optimizer_step
            self._zero_grads(w_opt, a_opt)
            self.log("train/weight_loss", w_loss.detach(), prog_bar=True, batch_size=bs)
            for name, value in w_terms.items():
                self.log(f"train/weight_loss/{name}", value.detach(), batch_size=bs)
        self.log("train/lr", w_opt.param_groups[0]["lr"], batch_size=bs)
        if self._nonfinite.mode == "skip":
            self.log(NONFINITE_LOG_KEY, float(self._nonfinite.total), batch_size=bs)
        return None if skip else w_loss.detach()

    #: First-order architecture passes compute no weight gradients (set ``False`` to compare).
    freeze_weights_in_arch_pass: bool = True

    def _freeze_weights_in_arch_pass(self) -> bool:
        """Whether the first-order architecture pass runs with the weights frozen.

        Not under DDP, whose reducer waits for every weight's gradient in every backward.
        """
        return self.freeze_weights_in_arch_pass and self.trainer.world_size == 1

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip gradients here: under AMP Lightning has unscaled them by now."""
        w_opt, a_opt = (o.optimizer if hasattr(o, "optimizer") else o for o in self.optimizers())
        clip = (
            self.gradient_clip_val
            if optimizer is w_opt
            else self.arch_gradient_clip_val
            if optimizer is a_opt
            else None
        )
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def _all_reduce_mean(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return tensors
        world = dist.get_world_size()
        out = []
        for t in tensors:
            t = t.contiguous().clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            out.append(t / world)
        return out

    def _unrolled_step(
        self, w_batch: dict[str, Any], a_batch: dict[str, Any], w_opt: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Second-order architecture gradient; sets ``.grad`` of the architecture parameters.

        Returns the validation loss, its terms, and everything to check for non-finite values,
        in the order of computation (the first non-finite one spoils all that follows): the
        terms of the training loss of the virtual step (``weight/<term>``), the validation
        terms, those of the two finite-difference training losses (``weight/<term> (finite
        difference)``) and the gradient.
        """
        opt = w_opt.optimizer if hasattr(w_opt, "optimizer") else w_opt
        group = opt.param_groups[0]
        weights = [p for p in self.weight_parameters() if p.requires_grad]
        alphas = list(self.arch_parameters().values())
        record: dict[str, Any] = {}
        train_calls: list[dict[str, torch.Tensor]] = []

        def train_loss() -> torch.Tensor:  # one frozen sample for every call (bilevel.py)
            loss, terms = self._loss_with_terms(w_batch, "weight")
            train_calls.append({k: v.detach() for k, v in {**terms, "total": loss}.items()})
            return loss

        def val_loss() -> torch.Tensor:
            loss, terms = self._loss_with_terms(a_batch, "arch")
            record["loss"], record["terms"] = loss, terms
            return loss

        grads = unrolled_arch_gradient(
            train_loss,
            val_loss,
            weights,
            alphas,
            lr=group["lr"],
            momentum=group.get("momentum", 0.0),
            weight_decay=group.get("weight_decay", 0.0),
            momentum_buffers=[opt.state.get(p, {}).get("momentum_buffer") for p in weights],
            buffers=list(self.space.buffers()),
            reduce=self._all_reduce_mean,
        )
        for a, g in zip(alphas, grads):
            a.grad = g.detach().to(a.dtype)
        first, *later = train_calls
        checked = {f"weight/{k}": v for k, v in first.items()}
        checked.update(record["terms"])
        for call in later:
            for k, v in call.items():
                key = f"weight/{k} (finite difference)"
                checked[key] = (
                    torch.cat([checked[key].reshape(-1), v.reshape(-1)]) if key in checked else v
                )
        checked["second-order gradient"] = torch.cat([g.detach().reshape(-1) for g in grads])
        return record["loss"], record["terms"], checked

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # the skipped-batch counts (NonFiniteHooks)
        checkpoint["genotype"] = self.derive().to_dict()

    def configure_callbacks(self) -> list[Callback]:
        """Add the genotype writer, the architecture logger and exact resume unless configured."""
        from callbacks import ArchitectureLogger, ExactResume, GenotypeWriter

        return missing_callbacks(self, GenotypeWriter, ArchitectureLogger, ExactResume)
