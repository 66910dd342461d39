"""Run a tiny search under `strategy: ddp` on CPU (gloo); each rank saves what it ended with.

Used by tests/test_ddp.py and tests/methods/{autodeeplab,fasterseg}/test_ddp.py:
    python tests/ddp_search.py <data_root> <out_dir> <darts|autodeeplab|fasterseg> <unrolled 0|1>
"""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods.fasterseg.space import FasterSegSpace
from lightning_nas.search import SearchModule
from lightning_nas.spaces import AutoDeepLabSpace, DartsSpace

SPACES = {
    "darts": lambda: DartsSpace(
        num_classes=6, C=4, layers=3, steps=2, multiplier=2, stem_multiplier=2
    ),
    "autodeeplab": lambda: AutoDeepLabSpace(num_classes=6, layers=3, filter_multiplier=2, blocks=3),
    "fasterseg": lambda: FasterSegSpace(num_classes=6, layers=8, Fch=1, widths=(6, 12)),
}


class Record(pl.Callback):
    """Image names of epoch 0 and the number of architecture steps."""

    def __init__(self):
        self.names, self.arch_steps, self.samples = [], 0, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 0:
            self.names += list(batch["weights"]["name"]) + list(batch["arch"]["name"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.samples.append(getattr(module.space, "last_sample", None))
        if trainer.current_epoch >= module.arch_start_epoch:
            self.arch_steps += 1


def main(root: str, out: str, space_name: str, unrolled: bool) -> None:
    torch.manual_seed(0)
    space = SPACES[space_name]()
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
    torch.save(
        {
            "arch": {k: v.detach().clone() for k, v in module.arch_parameters().items()},
            "initial": initial,
            "steps": trainer.global_step,
            "arch_steps": record.arch_steps,
            "names": record.names,
            "samples": record.samples,
            "genotype": module.derive().to_dict(),
            "buffers": {k: v.clone() for k, v in module.space.named_buffers()},
        },
        Path(out) / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1")


def run_ranks(tmp_path: Path, space_name: str, unrolled: bool = False) -> tuple[dict, dict]:
    """Run this script on 2 CPU processes in ``tmp_path``; return what rank 0 and rank 1 saved."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:  # a free port of its own: parallel test workers never collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "WANDB_MODE": "disabled",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    args = [str(tmp_path / "data"), str(tmp_path), space_name, "1" if unrolled else "0"]
    subprocess.run(
        [sys.executable, __file__, *args], check=True, env=env, cwd=tmp_path, timeout=300
    )
    return torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
