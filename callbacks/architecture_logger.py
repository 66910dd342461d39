"""ArchitectureLogger: architecture weights, their entropy and derived statistics, each epoch."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from callbacks.genotype_writer import genotype_dir
from lightning_nas.atomic import save_figure
from lightning_nas.spaces.base import SearchSpace

log = logging.getLogger(__name__)

UNIFORM_ENTROPY_RATIO = 0.99
"""At the end of fit, every architecture parameter at or above this entropy ratio (1 = uniform)
means the derived architecture is a random draw: :class:`ArchitectureLogger` warns."""


def entropy_ratios(dists: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean entropy / log(#choices) of each distribution with more than one choice.

    Example:
        >>> entropy_ratios({"a": torch.full((2, 4), 0.25), "b": torch.tensor([[1.0, 0.0]])})
        {'a': 1.0, 'b': 0.0}
    """
    out = {}
    for name, probs in dists.items():
        probs = probs.detach().float().cpu()
        k = probs.shape[-1]
        if k > 1:
            out[name] = round(mean_entropy(probs) / math.log(k), 6)
    return out


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

    With ``plot: true`` a heatmap per parameter, each figure of the space's ``arch_figures()``
    and the drawing of the currently derived genotype (``genotype_epoch=NNN.png``, see
    :mod:`lightning_nas.draw`; skipped for a kind without a drawing) are written to
    ``<checkpoint dir>/arch/`` and sent to WandbLogger (``log_image``) or TensorBoard
    (``add_figure``) when present. Only global rank zero draws; a drawing that fails warns once
    and never stops the search.

    At the end of fit, if every architecture parameter's entropy ratio is still at least
    :data:`UNIFORM_ENTROPY_RATIO` (0.99), the architecture weights never left uniform and the
    derived genotype is no better than a random draw: a warning says so.

    Args:
        log_weights: log every weight as a scalar.
        plot: draw heatmaps and the derived genotype.
    """

    def __init__(self, log_weights: bool = True, plot: bool = True) -> None:
        self.log_weights = log_weights
        self.plot = plot
        self._drawing_warned = False

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
                self._draw_genotype(trainer, out, space)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        space = getattr(pl_module, "space", None)
        if not isinstance(space, SearchSpace) or not trainer.is_global_zero:
            return
        ratios = entropy_ratios(space.arch_distributions())
        if not ratios or min(ratios.values()) < UNIFORM_ENTROPY_RATIO:
            return
        measured = ", ".join(f"{name} {ratio:.4f}" for name, ratio in ratios.items())
        message = (
            "ArchitectureLogger: every architecture parameter is still near uniform at the end "
            f"of the search (entropy ratio >= {UNIFORM_ENTROPY_RATIO}: {measured}): the derived "
            "architecture is a random draw: search longer or raise the architecture learning rate"
        )
        log.warning(message)
        rank_zero_warn(message)

    def _draw_genotype(self, trainer: pl.Trainer, out: Path, space: SearchSpace) -> None:
        """Draw the derived genotype as ``genotype_epoch=NNN.png``; never raise."""
        try:
            genotype = space.derive()
            if getattr(type(genotype), "drawing", None) is None:
                return  # a kind without a drawing
            from lightning_nas.draw import figure

            self._save(trainer, out, "genotype", figure(genotype))
        except Exception as err:  # noqa: BLE001 - a drawing never stops a search
            if not self._drawing_warned:
                self._drawing_warned = True
                rank_zero_warn(
                    f"ArchitectureLogger: could not draw the derived genotype "
                    f"({type(err).__name__}: {err}); the search goes on without drawings"
                )

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
        save_figure(fig, path, dpi=80)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"arch/{name}", images=[str(path)])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"arch/{name}", fig, trainer.current_epoch)
