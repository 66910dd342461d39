"""Measured effect of LatencyRegularization's λ on the derived FasterSeg student (CPU).

Two short FasterSeg searches from the same random architecture, data and seeds, differing only
in λ (0 and 10, the three latency components weighted equally), on a latency table *timed on
this machine* at ``--size``; the two derived students are then built and timed end to end with
the table's own routine (interleaved rounds, the minimum kept: robust to a busy machine). Prints
the table estimates, the measured latencies and their ratio. Run::

    .venv/bin/python benchmarks/latency_weight.py --size 256 256

Seen on the 2-core development machine at 256×256: about 13 ms (λ = 10: every width 4/12, cheap
ops) against 18–19 ms (λ = 0). The test ``tests/test_fasterseg_latency_weight.py`` checks the
same searches on a fake table (no timing).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import torch

from callbacks import LatencyRegularization
from lightning_nas.data import SyntheticDataModule
from lightning_nas.latency import LatencyTable, measure_module
from lightning_nas.search import SearchModule
from lightning_nas.spaces.fasterseg import FasterSegSpace

EQUAL = {"operators": 1.0, "strides": 1.0, "expansion": 1.0}
SPACE = {"num_classes": 6, "layers": 8, "Fch": 8, "widths": (4, 12), "teacher": False}


def search(table: Path, weight: float, root: Path, out: Path, epochs: int) -> FasterSegSpace:
    """A short search from a fixed random architecture with latency weight ``weight``."""
    pl.seed_everything(0)
    space = FasterSegSpace(sandwich=False, **SPACE)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in space.arch_parameters().values():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    module = SearchModule(
        space,
        arch_optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.3}},
        weight_lr_scheduler=None,
    )
    data = SyntheticDataModule(
        root=str(root), num_train=16, num_val=4, image_size=64, search=True, batch_size=2
    )
    pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=out,
        callbacks=[LatencyRegularization(str(table), weight=weight, component_weights=EQUAL)],
    ).fit(module, data)
    return space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = tuple(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = LatencyTable.build(
            FasterSegSpace(**SPACE).latency_configs(size),
            input_size=size,
            warmup=2,
            repeats=5,
            progress=True,
        )
        path = table.save(tmp / "fasterseg.json")
        spaces = {w: search(path, w, tmp / "data", tmp / str(w), args.epochs) for w in (0.0, 10.0)}
    genotypes = {w: s.derive() for w, s in spaces.items()}
    estimates = {w: spaces[w].derived_latency(table) for w in spaces}
    nets = {w: g.build(num_classes=6, Fch=8, aux_heads=False).eval() for w, g in genotypes.items()}
    x = torch.randn(1, 3, *size)
    rounds: dict[float, list[float]] = {w: [] for w in nets}
    for _ in range(args.rounds):
        for w, net in nets.items():
            rounds[w].append(measure_module(net, [x], warmup=3, repeats=10))
    measured = {w: min(r) for w, r in rounds.items()}
    print(f"{'λ':>6}{'table estimate ms':>20}{'measured ms':>14}")
    for w in (0.0, 10.0):
        print(f"{w:>6}{estimates[w]:>20.2f}{measured[w]:>14.2f}")
    print(f"measured λ=10 / λ=0: {measured[10.0] / measured[0.0]:.2f}")


if __name__ == "__main__":
    main()
