"""GenotypeWriter: write the derived genotype beside the checkpoints after every epoch."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_nas import genotypes


def genotype_dir(trainer: pl.Trainer) -> Path:
    """Where a search writes its genotypes: the checkpoint directory, else the log directory.

    Call it on every rank: ``trainer.log_dir`` broadcasts under DDP.
    """
    ckpt = trainer.checkpoint_callback
    dirpath = getattr(ckpt, "dirpath", None) if ckpt is not None else None
    if dirpath:
        return Path(dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir)


class GenotypeWriter(Callback):
    """Write ``genotype_epoch=NNN.yaml`` and ``genotype.yaml`` (the latest) each epoch.

    The module must have a ``derive()`` method returning a
    :class:`~lightning_nas.genotypes.Genotype`; if it also has ``extra_genotypes()`` (a dict
    of name → genotype, e.g. FasterSeg's ``{"teacher": ...}``) each is written as
    ``genotype_<name>.yaml`` and ``genotype_<name>_epoch=NNN.yaml``. Files go to ``dirpath``
    or, by default, beside the checkpoints (the log directory when there is no checkpoint
    callback). Only rank 0 writes. At the end of fit the final genotype is printed.

    Args:
        dirpath: directory for the genotype files (default: the checkpoint directory).
        verbose: print the final genotype at the end of fit.
    """

    def __init__(self, dirpath: str | None = None, verbose: bool = True) -> None:
        self.dirpath = dirpath
        self.verbose = verbose
        self.last_path: Path | None = None

    def _dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else genotype_dir(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        out = self._dir(trainer)  # on every rank: trainer.log_dir is a collective call under DDP
        if not trainer.is_global_zero:
            return
        found = {"": pl_module.derive()}
        extra = getattr(pl_module, "extra_genotypes", None)
        if callable(extra):
            found.update({f"_{name}": g for name, g in extra().items()})
        out.mkdir(parents=True, exist_ok=True)
        epoch = trainer.current_epoch
        for suffix, genotype in found.items():
            genotypes.save(genotype, out / f"genotype{suffix}_epoch={epoch:03d}.yaml")
            genotypes.save(genotype, out / f"genotype{suffix}.yaml")
        self.last_path = out / "genotype.yaml"

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.verbose and trainer.is_global_zero and self.last_path is not None:
            text = self.last_path.read_text()
            rank_zero_info(f"Derived genotype ({self.last_path}):\n{text}")
