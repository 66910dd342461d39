r"""How well does the latency table predict end-to-end latency of derived networks?

Builds a latency table for a search space (``--space darts`` or ``fasterseg``), samples N random
architectures (random architecture parameters → the space's derivation), builds each discrete
network, measures it end to end with the same timing routine
as the table entries, and compares with the table estimate (the sum of the derived network's op
latencies + the fixed parts). Prints one line per network, Pearson r (and Spearman ρ) between
estimate and measurement, and the mean estimate/measured ratio (the part of the network's cost
the op-by-op sum misses or double-counts: call overheads, memory traffic between ops, fusion).
Entries and networks are timed in interleaved rounds; on a busy machine use ``--stat min``.

    .venv/bin/python benchmarks/latency_correlation.py --num 20 --C 8 --layers 5 --size 64 64 \
        --rounds 5 --stat min
    .venv/bin/python benchmarks/latency_correlation.py --device cuda --C 16 --layers 8 \
        --size 256 512
    .venv/bin/python benchmarks/latency_correlation.py --space fasterseg --num 30 --Fch 4 \
        --layers 16 --size 256 512 --rounds 3 --stat min
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_nas.latency import LatencyTable, OpTimer, measure_module
from lightning_nas.methods.darts.network import DartsNetwork
from lightning_nas.methods.darts.space import DartsSpace
from lightning_nas.methods.fasterseg.network import FasterSegNetwork
from lightning_nas.methods.fasterseg.space import FasterSegSpace


def pearson(x: list[float], y: list[float]) -> float:
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5


def ranks(x: list[float]) -> list[float]:
    order = sorted(range(len(x)), key=x.__getitem__)
    r = [0.0] * len(x)
    for rank, i in enumerate(order):
        r[i] = float(rank)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", choices=("darts", "fasterseg"), default="darts")
    p.add_argument("--num", type=int, default=20, help="sampled architectures")
    p.add_argument("--C", type=int, default=8, help="DARTS: initial channels")
    p.add_argument("--Fch", type=int, default=4, help="FasterSeg: base channels (release: 12)")
    p.add_argument("--layers", type=int, default=None, help="default: 5 (DARTS), 16 (FasterSeg)")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20, help="timed samples per network and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    p.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="how the per-round medians are combined (min: robust on a busy machine)",
    )
    p.add_argument("--alpha-scale", type=float, default=3.0, help="std of the random α")
    p.add_argument(
        "--width-tilt",
        type=float,
        default=6.0,
        help="FasterSeg: width logits += U(-t, t) · linspace(-1, 1) per network",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = tuple(args.size)
    if args.space == "darts":
        macro = {"num_classes": args.num_classes, "C": args.C, "layers": args.layers or 5}
        space = DartsSpace(**macro)

        def network(genotype):  # noqa: ANN001, ANN202
            return DartsNetwork(genotype, **macro)

        def describe(genotype):  # noqa: ANN001, ANN202
            return ",".join(
                op.replace("_conv", "").replace("_3x3", "3").replace("_5x5", "5")
                for op, _ in genotype.normal
            )
    else:
        macro = {"num_classes": args.num_classes, "Fch": args.Fch}
        space = FasterSegSpace(layers=args.layers or 16, teacher=False, **macro)

        def network(genotype):  # noqa: ANN001, ANN202
            return FasterSegNetwork(genotype, aux_heads=False, **macro)

        def describe(genotype):  # noqa: ANN001, ANN202
            short = {
                "skip": "s",
                "conv": "c",
                "conv_downup": "z",
                "conv_2x": "C",
                "conv_2x_downup": "Z",
            }
            return " | ".join(
                "".join(short[o] for o in ops) + " w" + ",".join(map(str, w))
                for ops, w in zip(genotype.ops, genotype.widths)
            )

    aggregate = statistics.median if args.stat == "median" else min
    timer = OpTimer(device, warmup=args.warmup, repeats=args.repeats, builders=(space.latency_op,))
    start = time.perf_counter()
    table = LatencyTable.build(
        space.latency_configs(size),
        device=device,
        input_size=size,
        warmup=args.warmup,
        repeats=args.repeats,
        measure=lambda c: aggregate([timer(c) for _ in range(args.rounds)]),
        progress=False,
    )
    print(
        f"{table} built in {time.perf_counter() - start:.1f} s, {torch.get_num_threads()} threads"
    )

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(1, 3, *size, generator=gen).to(device)
    genotypes, nets, estimates = [], [], []
    for _ in range(args.num):
        with torch.no_grad():
            # FasterSeg: a per-network tilt towards narrow or wide widths spreads the sample
            # over the latency range (uniform random widths all cost about the same)
            tilt = args.width_tilt * (2 * float(torch.rand((), generator=gen)) - 1)
            for name, alpha in space.arch_parameters().items():
                alpha.copy_(args.alpha_scale * torch.randn(alpha.shape, generator=gen))
                if name.startswith("ratio"):
                    alpha.add_(tilt * torch.linspace(-1, 1, alpha.shape[1]))
        genotype = space.derive()
        genotypes.append(genotype)
        estimates.append(space.derived_latency(table, genotype))
        nets.append(network(genotype).to(device).eval())
    # interleaved rounds: a burst of load from other processes hits every network alike
    rounds: list[list[float]] = [[] for _ in nets]
    for _ in range(args.rounds):
        for i, net in enumerate(nets):
            rounds[i].append(measure_module(net, [x], warmup=args.warmup, repeats=args.repeats))
    measured = [aggregate(r) for r in rounds]

    print(f"{'#':>3} {'estimate ms':>12} {'measured ms':>12} {'ratio':>6}  architecture")
    for n, (genotype, est, ms) in enumerate(zip(genotypes, estimates, measured)):
        print(f"{n:>3} {est:12.3f} {ms:12.3f} {est / ms:6.2f}  {describe(genotype)}")

    r = pearson(estimates, measured)
    rho = pearson(ranks(estimates), ranks(measured))
    ratio = statistics.fmean(e / m for e, m in zip(estimates, measured))
    print(
        f"\n{args.space}: N={args.num} {macro} layers={space.layers} input={size[0]}x{size[1]} "
        f"device={table.device_name}, {args.stat} of {args.rounds} rounds: Pearson r = {r:.3f}, "
        f"Spearman rho = {rho:.3f}, mean estimate/measured = {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
