"""Score a candidate genotype by training it with Lightning: the evaluator of a discrete search.

:class:`LightningEvaluator` builds the candidate's network (``build_network`` of the genotype, or
another class given by path, e.g. a head for cached features), wraps it in a
:class:`~lightning_nas.segmentation.SegmentationModule` (or the class given), and fits it with a
fresh ``lightning.pytorch.Trainer`` on a DataModule. It returns the objectives named in
``objectives``:

* ``"val/mIoU"`` (or any logged metric name): the value after the last validation, maximised
  (names containing ``loss`` are minimised);
* ``"params"``: the network's parameters in millions, minimised;
* ``"latency_ms"``: the network's measured latency at ``latency_input_size`` on this machine's
  CPU (the one timing routine, :func:`~lightning_nas.latency.measure_module`), minimised.

Each trial's checkpoints and logs go to its own run directory. For a single-objective study an
Optuna pruning callback stops bad candidates early (``prune: true``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lightning_nas._config import import_object
from lightning_nas.errors import ConfigError
from lightning_nas.strategies.protocols import Evaluator

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import optuna

    from lightning_nas.genotypes import Genotype

__all__ = ["LightningEvaluator"]

_BUILTIN_OBJECTIVES = {"params": "minimize", "latency_ms": "minimize"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's per-fit chatter off (one line per trial is the study's)."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in (
                ".*log_every_n_steps.*",
                ".*does not have many workers.*",
                ".*LeafSpec.*",
                ".*exists and is not empty.*",
            ):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        logger.setLevel(level)


def _plain(value: Any) -> Any:
    r"""Parsed config values (jsonargparse ``Namespace``\ s) as plain dicts and lists."""
    if hasattr(value, "as_dict"):
        return _plain(value.as_dict())
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


class LightningEvaluator(Evaluator):
    """Train a candidate with Lightning and return its objectives.

    Args:
        data: The DataModule (instantiated once per worker; its ``num_classes`` sizes the head).
        objectives: What to return, in order (see the module docstring).
        trainer: Keyword arguments of ``lightning.pytorch.Trainer`` for each candidate (e.g.
            ``max_epochs``, ``accelerator``); logging goes to a CSV logger in the run directory.
        network: Class path of the network to build instead of the genotype kind's own (called
            as ``Network(genotype, num_classes=..., **network_kwargs)``), e.g. a head for
            cached features.
        network_kwargs: Further arguments of the network. ``in_channels`` defaults to the
            data's ``feature_channels`` when it has them (cached features).
        module: Class path of the LightningModule (default
            ``lightning_nas.segmentation.SegmentationModule``), called as
            ``Module(network, num_classes=..., **module_kwargs)``.
        module_kwargs: Further arguments of the module (optimizer, lr schedule, ...).
        prune: Add Optuna's pruning callback on the objective (single-objective studies only:
            Optuna does not prune multi-objective trials; ignored there).
        latency_input_size: ``(H, W)`` of the ``latency_ms`` objective and of the recorded
            cost; ``None``: the genotype's own ``input_size`` when it has one, else 512×1024.
        seed: ``seed_everything`` value of each candidate's fit (same data order for all).
        record_cost: Store the network's ``params`` (millions) and ``flops`` (G multiply-adds
            at the latency input size, batch 1) as the trial's user attributes (networks on
            images only: not for heads on cached features).
    """

    def __init__(
        self,
        data: pl.LightningDataModule,
        objectives: Sequence[str] = ("val/mIoU",),
        trainer: Mapping[str, Any] | None = None,
        network: str | None = None,
        network_kwargs: Mapping[str, Any] | None = None,
        module: str = "lightning_nas.segmentation.SegmentationModule",
        module_kwargs: Mapping[str, Any] | None = None,
        prune: bool = False,
        latency_input_size: tuple[int, int] | None = None,
        seed: int = 0,
        record_cost: bool = True,
    ) -> None:
        if not objectives:
            raise ConfigError("evaluator.objectives: expected at least one objective")
        self.data = data
        self.objectives = tuple(objectives)
        self.trainer_kwargs = _plain(dict(trainer or {}))
        self.network = network
        self.network_kwargs = _plain(dict(network_kwargs or {}))
        self.module = module
        self.module_kwargs = _plain(dict(module_kwargs or {}))
        self.prune = prune
        self.latency_input_size = None if latency_input_size is None else tuple(latency_input_size)
        self.seed = seed
        self.record_cost = record_cost
        for key in ("logger", "default_root_dir", "callbacks"):
            if key in self.trainer_kwargs:
                raise ConfigError(
                    f"evaluator.trainer.{key}: set by the evaluator (each trial logs to its run "
                    "directory); remove it"
                )

    @property
    def directions(self) -> tuple[str, ...]:
        """``"maximize"`` / ``"minimize"`` per objective."""
        return tuple(
            _BUILTIN_OBJECTIVES.get(o, "minimize" if "loss" in o else "maximize")
            for o in self.objectives
        )

    def num_classes(self) -> int:
        """The classes of the data (``data.num_classes``)."""
        value = getattr(self.data, "num_classes", None)
        if not isinstance(value, int):
            raise ConfigError(f"evaluator.data: {type(self.data).__name__} has no num_classes")
        return value

    def build(self, genotype: Genotype) -> torch.nn.Module:
        """The candidate's network."""
        from lightning_nas.genotypes import build_network

        kwargs = dict(self.network_kwargs)
        channels = getattr(self.data, "feature_channels", None)
        if isinstance(channels, int) and "in_channels" not in kwargs:
            kwargs["in_channels"] = channels  # a head on cached features: their channels
        if self.network is None:
            return build_network(genotype, self.num_classes(), **kwargs)
        cls = import_object(self.network)
        return cls(genotype, num_classes=self.num_classes(), **kwargs)

    def __call__(
        self, genotype: Genotype, run_dir: Path, trial: optuna.Trial | None = None
    ) -> list[float]:
        """Fit the candidate in ``run_dir``; return its objectives."""
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import CSVLogger

        pl.seed_everything(self.seed, workers=True, verbose=False)
        network = self.build(genotype)
        module_cls = import_object(self.module)
        module = module_cls(network, num_classes=self.num_classes(), **self.module_kwargs)
        callbacks: list[pl.Callback] = []
        metric_objectives = [o for o in self.objectives if o not in _BUILTIN_OBJECTIVES]
        if self.prune and trial is not None and len(self.objectives) == 1 and metric_objectives:
            from optuna_integration import PyTorchLightningPruningCallback

            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=metric_objectives[0]))
        kwargs = {
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            **self.trainer_kwargs,
        }
        with _quiet():
            trainer = pl.Trainer(
                default_root_dir=str(run_dir),
                logger=CSVLogger(str(run_dir), name="logs", version=""),
                callbacks=callbacks,
                **kwargs,
            )
            if metric_objectives:
                trainer.fit(module, datamodule=self.data)
                for callback in callbacks:
                    callback.check_pruned()  # type: ignore[attr-defined]
        size = self.input_size(genotype)
        on_images = getattr(self.data, "feature_channels", None) is None
        if self.record_cost and trial is not None and on_images:
            for key, value in self.cost(network, size).items():
                trial.set_user_attr(key, value)
        values = []
        for name in self.objectives:
            if name == "params":
                values.append(sum(p.numel() for p in network.parameters()) / 1e6)
            elif name == "latency_ms":
                values.append(self._latency(network, size))
            else:
                value = trainer.callback_metrics.get(name)
                if value is None:
                    logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
                    raise ConfigError(
                        f"evaluator.objectives: {name!r} was not logged (logged: {logged})"
                    )
                values.append(float(value))
        return [v if math.isfinite(v) else float("nan") for v in values]

    def input_size(self, genotype: Genotype) -> tuple[int, int]:
        """Where latency and cost are measured (see ``latency_input_size``)."""
        if self.latency_input_size is not None:
            return self.latency_input_size  # type: ignore[return-value]
        size = getattr(genotype, "input_size", None)
        return tuple(size) if size is not None else (512, 1024)  # type: ignore[return-value]

    def _input(self, size: tuple[int, int]) -> torch.Tensor:
        channels = int(getattr(self.data, "in_channels", 3))
        return torch.randn(1, channels, *size)

    def cost(self, network: torch.nn.Module, size: tuple[int, int]) -> dict[str, float]:
        """``params`` (millions) and ``flops`` (G multiply-adds, batch 1 at ``size``)."""
        from torch.utils.flop_counter import FlopCounterMode

        was_training = network.training
        network.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(self._input(size))
        network.train(was_training)
        params = sum(p.numel() for p in network.parameters()) / 1e6
        return {"params": round(params, 6), "flops": round(counter.get_total_flops() / 2e9, 6)}

    def _latency(self, network: torch.nn.Module, size: tuple[int, int]) -> float:
        from lightning_nas.latency import measure_module

        return measure_module(network.eval(), [self._input(size)], warmup=2, repeats=5)
