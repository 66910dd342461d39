"""Measured effect of LatencyRegularization's λ on the derived FasterSeg student (CPU).

Two short FasterSeg searches from the same random architecture, data and seeds, differing only
in λ (0 and 10, the three latency components weighted equally), on a latency table *timed on
this machine* at ``--size``; the two derived students are then built and timed end to end with
the table's own routine (interleaved rounds, the minimum kept: robust to a busy machine). Prints
the table estimates, the measured latencies and their ratio. Run::

    .venv/bin/python benchmarks/latency_weight.py --size 256 256

Seen on the 2-core development machine at 256×256: about 13 ms (λ = 10: every width 4/12, cheap
ops) against 18–19 ms (λ = 0). The test ``tests/methods/fasterseg/test_latency_weight.py``
checks the same searches on a fake table (no timing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

import callbacks  # noqa: E402, F401  (before tests/ is on the path: tests/callbacks is no package)

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))

from methods.fasterseg.test_latency_weight import search  # noqa: E402

from lightning_nas.latency import LatencyTable, measure_module  # noqa: E402
from lightning_nas.methods.fasterseg.space import FasterSegSpace  # noqa: E402

SPACE = {"num_classes": 6, "layers": 8, "Fch": 8, "widths": (4, 12), "teacher": False}


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
        space = FasterSegSpace(**SPACE)
        table = LatencyTable.build(
            space.latency_configs(size),
            input_size=size,
            warmup=2,
            repeats=5,
            progress=True,
            builders=(space.latency_op,),
        )
        path = table.save(tmp / "fasterseg.json")
        spaces = {
            w: search(path, w, tmp / "data", tmp / str(w), SPACE, args.epochs, image_size=64)
            for w in (0.0, 10.0)
        }
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
