"""ArchitectureLogger: architecture weights, their entropy and derived statistics, each epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from typing_extensions import override

from callbacks.genotype_writer import genotype_dir
from lightning_nas.spaces.base import SearchSpace


def mean_entropy(probs: torch.Tensor) -> float:
    """Mean entropy (nats) of the distributions along the last dimension of ``probs``.

    Example:
        >>> round(mean_entropy(torch.full((3, 4), 0.25)), 4) == round(math.log(4), 4)
        True
    """
    p = probs.clamp_min(1e-12)
    return float(-(p * p.log()).sum(-1).mean())


@runtime_checkable
class ArchitectureLabels(Protocol):
    """A space that names the rows and columns of its 2-D architecture parameters."""

    def arch_labels(self) -> dict[str, tuple[list[str], list[str]]]:
        """Row and column labels of each 2-D architecture parameter, by name."""
        ...


@runtime_checkable
class ArchitectureFigures(Protocol):
    """A space that draws figures of its own each epoch (Auto-DeepLab: its lattice and path)."""

    def arch_figures(self) -> dict[str, Any]:
        """Matplotlib ``Figure``s by name (built with ``matplotlib.figure.Figure``, not pyplot)."""
        ...


@runtime_checkable
class DerivedStatistics(Protocol):
    """A space that reports scalar statistics of its derived architecture each epoch."""

    def derived_statistics(self) -> dict[str, float]:
        """Statistics by name (e.g. DARTS' number of skip connections in the normal cell)."""
        ...


class ArchitectureLogger(Callback):
    """Log the search's architecture distributions each epoch through any Lightning logger.

    Logged keys (per architecture parameter ``<name>``):

    * ``arch/<name>/entropy`` and ``arch/<name>/entropy_ratio`` (entropy / log(#choices): 1 is
      uniform, 0 is one-hot);
    * ``arch/<name>/<row>/<col>`` — every normalised weight (``log_weights``);
    * ``arch/<stat>`` — the space's ``derived_statistics()``, e.g. the number of skip
      connections in the derived cells (the classic DARTS collapse signal).

    With ``plot: true`` a heatmap per parameter (and each figure of the space's
    ``arch_figures()``) is written to ``<checkpoint dir>/arch/`` and sent to
    WandbLogger (``log_image``) or TensorBoard (``add_figure``) when present.

    Args:
        log_weights: log every weight as a scalar.
        plot: draw heatmaps.
    """

    def __init__(self, log_weights: bool = True, plot: bool = True) -> None:
        self.log_weights = log_weights
        self.plot = plot

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        space = getattr(pl_module, "space", None)
        if not isinstance(space, SearchSpace):
            return
        dists = space.arch_distributions()
        labels = space.arch_labels() if isinstance(space, ArchitectureLabels) else {}
        metrics: dict[str, float] = {}
        for name, probs in dists.items():
            probs = probs.detach().float().cpu()
            metrics[f"arch/{name}/entropy"] = mean_entropy(probs)
            k = probs.shape[-1]
            if k > 1:
                metrics[f"arch/{name}/entropy_ratio"] = mean_entropy(probs) / math.log(k)
            if self.log_weights and probs.dim() == 2:
                rows, cols = labels.get(name, (None, None))
                for i in range(probs.shape[0]):
                    for j in range(probs.shape[1]):
                        r = rows[i] if rows else str(i)
                        c = cols[j] if cols else str(j)
                        metrics[f"arch/{name}/{r}/{c}"] = float(probs[i, j])
        if isinstance(space, DerivedStatistics):
            for key, value in space.derived_statistics().items():
                metrics[f"arch/{key}"] = float(value)
        pl_module.log_dict(metrics, on_step=False, on_epoch=True)
        if self.plot and not trainer.sanity_checking:
            out = genotype_dir(trainer) / "arch"  # on every rank: log_dir broadcasts under DDP
            if trainer.is_global_zero:
                self._plot(trainer, out, dists, labels)
                figures = space.arch_figures() if isinstance(space, ArchitectureFigures) else {}
                for name, fig in figures.items():
                    self._save(trainer, out, name, fig)

    def _plot(
        self,
        trainer: pl.Trainer,
        out: Path,
        dists: dict[str, torch.Tensor],
        labels: dict[str, tuple[list[str], list[str]]],
    ) -> None:
        from matplotlib.figure import Figure

        out.mkdir(parents=True, exist_ok=True)
        for name, probs in dists.items():
            probs = probs.detach().float().cpu()
            if probs.dim() != 2:
                continue
            rows, cols = labels.get(name, (None, None))
            fig = Figure(figsize=(1 + 0.6 * probs.shape[1], 1 + 0.3 * probs.shape[0]))
            ax = fig.subplots()
            im = ax.imshow(probs.numpy(), cmap="viridis", vmin=0.0, aspect="auto")
            ax.set_title(f"{name} — epoch {trainer.current_epoch}")
            ax.set_xticks(range(probs.shape[1]), cols or range(probs.shape[1]), rotation=60)
            ax.set_yticks(range(probs.shape[0]), rows or range(probs.shape[0]))
            fig.colorbar(im, ax=ax)
            fig.tight_layout()
            self._save(trainer, out, name, fig)

    @staticmethod
    def _save(trainer: pl.Trainer, out: Path, name: str, fig: Any) -> None:
        path = Path(out) / f"{name}_epoch={trainer.current_epoch:03d}.png"
        fig.savefig(path, dpi=80)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"arch/{name}", images=[str(path)])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"arch/{name}", fig, trainer.current_epoch)
