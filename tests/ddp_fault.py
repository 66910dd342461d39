"""A tiny 2-process CPU (gloo) DDP search in which one rank raises; used by test_ddp_faults.py.

    python tests/ddp_fault.py <data_root> <out_dir> <fault_rank> <block 0|1> <guard grace s>

``fault_rank`` raises when training batch 1 of epoch 0 starts. The other rank then waits in the
first all-reduce of that batch (``block=0``), or, with ``block=1``, in a wait that never notices
the dead peer (a long sleep: what a blocked NCCL collective does). Each rank writes its process
id to ``<out_dir>/pid<rank>`` in ``setup``, so that the test can check that every rank ended,
not only the one it launched. The trainer has ``callbacks.DDPFaultGuard(grace)`` unless
``grace`` is negative.
"""

import os
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from callbacks import DDPFaultGuard
from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import SearchModule
from lightning_nas.spaces import DartsSpace

MESSAGE = "injected fault on rank {rank}"


class Fault(pl.Callback):
    """Raise on ``rank`` at training batch 1; optionally block the other ranks there."""

    def __init__(self, out: str, rank: int, block: bool) -> None:
        self.out, self.rank, self.block = Path(out), rank, block

    def setup(self, trainer, module, stage):
        (self.out / f"pid{trainer.global_rank}").write_text(str(os.getpid()))

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx != 1:
            return
        if trainer.global_rank == self.rank:
            raise RuntimeError(MESSAGE.format(rank=self.rank))
        if self.block:
            time.sleep(600)


def main(root: str, out: str, rank: int, block: bool, grace: float) -> None:
    torch.manual_seed(0)
    space = DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2, stem_multiplier=2)
    data = SyntheticDataModule(
        root=root, num_train=16, num_val=8, image_size=32, search=True, batch_size=2
    )
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        callbacks=[Fault(out, rank, block)] + ([DDPFaultGuard(grace)] if grace >= 0 else []),
        default_root_dir=out,
    )
    trainer.fit(SearchModule(space), data)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", float(sys.argv[5]))
