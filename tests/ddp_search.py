"""Run a tiny search under `strategy: ddp` on CPU (gloo); each rank saves what it ended with.

Used by tests/test_ddp.py: python tests/ddp_search.py <data_root> <out_dir> <unrolled 0|1>
"""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import SearchModule
from lightning_nas.spaces import DartsSpace


class Record(pl.Callback):
    def __init__(self):
        self.names = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 0:
            self.names += list(batch["weights"]["name"]) + list(batch["arch"]["name"])


def main(root: str, out: str, unrolled: bool) -> None:
    torch.manual_seed(0)
    space = DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2, stem_multiplier=2)
    initial = {k: v.detach().clone() for k, v in space.arch_parameters().items()}
    module = SearchModule(space, unrolled=unrolled)
    data = SyntheticDataModule(
        root=root, num_train=32, num_val=8, image_size=32, search=True, batch_size=2
    )
    record = Record()
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[record],
        default_root_dir=out,
    )
    trainer.fit(module, data)
    rank = trainer.global_rank
    torch.save(
        {
            "alphas": {k: v.detach().clone() for k, v in module.arch_parameters().items()},
            "initial": initial,
            "steps": trainer.global_step,
            "names": record.names,
        },
        Path(out) / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "1")
