"""BranchSelection: FasterSeg's choice of the student's final branch pair, during the search.

After each validation epoch the release scores the two pairs the student can end with — the
branches ending at 1/32 and 1/8, or at 1/32 and 1/16 — by ``mIoU · (latency / target)^-0.07``
(reference §3.3). This callback measures each pair's validation mIoU (the student at its argmax
widths, ``space.pair_logits``) and its derived network's table latency, and records both in the
space (``space.record_branch_scores``), whose ``derive()`` then picks the pair as the release does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from torchmetrics.classification import MulticlassJaccardIndex
from typing_extensions import override

from lightning_nas.errors import ConfigError
from lightning_nas.latency.table import LatencyTable
from lightning_nas.methods.fasterseg.space import BRANCH_PAIRS

if TYPE_CHECKING:
    from lightning_nas.genotypes import Genotype

__all__ = ["BranchPairs", "BranchSelection"]


@runtime_checkable
class BranchPairs(Protocol):
    """What :class:`BranchSelection` needs of a space (``FasterSegSpace`` has it)."""

    num_classes: int

    def pair_logits(self, x: torch.Tensor) -> Mapping[tuple[int, int], torch.Tensor]:
        """The logits of each branch pair of :data:`BRANCH_PAIRS` at the input size."""
        ...

    def derive_pair(self, lasts: tuple[int, int]) -> Genotype:
        """The network derived with the branch pair ``lasts``."""
        ...

    def derived_latency(
        self, table: LatencyTable, genotype: Genotype | None = None, input_size: Any = None
    ) -> Any:
        """Table latency (ms) of ``genotype``."""
        ...

    def record_branch_scores(
        self, miou: Mapping[tuple[int, int], float], latency_ms: Mapping[tuple[int, int], float]
    ) -> None:
        """Record each pair's validation mIoU and latency for the derivation."""
        ...


class BranchSelection(Callback):
    """Score the student's branch pairs on the validation set and record them in the space.

    The space must provide ``pair_logits(x)``, ``derive_pair(lasts)``, ``derived_latency(table,
    genotype)`` and ``record_branch_scores(miou, latency_ms)`` (``FasterSegSpace`` does). The
    latency comes from ``table`` or, by default, from the ``LatencyRegularization`` callback's
    table. Logged: ``branch/miou_<pair>``, ``branch/latency_ms_<pair>`` (pair ``2-0`` / ``2-1``).

    Args:
        table: Path of a latency table; default: the ``LatencyRegularization`` callback's.
        ignore_index: Label ignored by the mIoU.

    Example:
        >>> BranchSelection().ignore_index
        255
    """

    def __init__(self, table: str | None = None, ignore_index: int = 255) -> None:
        self.table_path = table
        self.ignore_index = ignore_index
        self.table: LatencyTable | None = None
        self._metrics: dict[tuple[int, int], MulticlassJaccardIndex] = {}

    @staticmethod
    def _space(pl_module: pl.LightningModule) -> BranchPairs:
        space = getattr(pl_module, "space", None)
        if not isinstance(space, BranchPairs):
            raise ConfigError(
                f"BranchSelection: {type(pl_module).__name__} has no search space with branch "
                "pairs (pair_logits, derive_pair, derived_latency, record_branch_scores; "
                "FasterSegSpace has them)"
            )
        return space

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._space(pl_module)
        if self.table_path is not None:
            self.table = LatencyTable.load(self.table_path)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._latency_table(trainer)  # fail now, not after the first validation epoch

    def _latency_table(self, trainer: pl.Trainer) -> LatencyTable:
        if self.table is not None:
            return self.table
        from callbacks.latency_regularization import LatencyRegularization

        for cb in trainer.callbacks:
            if isinstance(cb, LatencyRegularization) and cb.table is not None:
                return cb.table
        raise ConfigError(
            "BranchSelection: no latency table (give table: or add LatencyRegularization)"
        )

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        space = self._space(pl_module)
        self._metrics = {
            pair: MulticlassJaccardIndex(
                space.num_classes, ignore_index=self.ignore_index, average="macro"
            ).to(pl_module.device)
            for pair in BRANCH_PAIRS
        }

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        with torch.no_grad():
            logits = self._space(pl_module).pair_logits(batch["image"])
        for pair, metric in self._metrics.items():
            metric.update(logits[pair].argmax(1), batch["mask"].long())

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._metrics:
            return
        space = self._space(pl_module)
        table = self._latency_table(trainer)
        miou = {pair: float(m.compute()) for pair, m in self._metrics.items()}
        latency = {
            pair: float(space.derived_latency(table, space.derive_pair(pair)))
            for pair in BRANCH_PAIRS
        }
        space.record_branch_scores(miou, latency)
        for pair in BRANCH_PAIRS:
            tag = f"{pair[0]}-{pair[1]}"
            pl_module.log(f"branch/miou_{tag}", miou[pair], sync_dist=False)
            pl_module.log(f"branch/latency_ms_{tag}", latency[pair], sync_dist=False)
