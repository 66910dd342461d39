"""Run a tiny Auto-DeepLab search under `strategy: ddp` on CPU (gloo); each rank saves α and β.

Used by tests/test_ddp_autodeeplab.py: python tests/ddp_autodeeplab.py <data_root> <out_dir>
"""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import SearchModule
from lightning_nas.spaces import AutoDeepLabSpace


class CountArchSteps(pl.Callback):
    def __init__(self):
        self.arch_steps = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.current_epoch >= module.arch_start_epoch:
            self.arch_steps += 1


def main(root: str, out: str) -> None:
    torch.set_num_threads(1)  # two processes on the CI's cores
    torch.manual_seed(0)
    space = AutoDeepLabSpace(num_classes=6, layers=3, filter_multiplier=2, blocks=3)
    initial = {k: v.detach().clone() for k, v in space.arch_parameters().items()}
    module = SearchModule(space, arch_start_epoch=0)
    data = SyntheticDataModule(
        root=root, num_train=32, num_val=8, image_size=32, search=True, batch_size=2
    )
    counter = CountArchSteps()
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[counter],
        default_root_dir=out,
    )
    trainer.fit(module, data)
    torch.save(
        {
            "arch": {k: v.detach().clone() for k, v in module.arch_parameters().items()},
            "initial": initial,
            "arch_steps": counter.arch_steps,
            "genotype": module.derive().to_dict(),
        },
        Path(out) / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
