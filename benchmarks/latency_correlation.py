r"""How well does the latency table predict end-to-end latency of derived networks?

Samples random architectures of a search space (``--space darts``, ``fasterseg`` or
``autodeeplab``: random architecture parameters → the space's derivation), builds each discrete
network, and times every table entry and every network with the same routine
(``measure_module`` with ``Timer.blocked_autorange``, ``--min-run-time`` seconds of blocks; on
a CPU with one thread the clock is the thread's CPU time, ``--clock``),
in ``--rounds`` interleaved rounds (every entry, then every network, per round), each value the
``--stat`` of its rounds (default ``min``: load from other processes only ever adds time). On the
CPU the glibc allocator is set to keep freed buffers (``steady_allocator``; ``--default-malloc``
to leave it). The estimate of a network is ``network_estimate``: the space's ``derived_latency``
(every op, resampling and head entry) plus the ``network_call`` entry (the cost of calling a
network, measured like any entry).

Prints one line per network, then per space Pearson r with a bootstrap 95 % interval
(``--resamples`` resamples of the networks, seed ``--seed``), Spearman ρ, and the mean
estimate/measured ratio, raw and after a linear calibration ``measured ≈ a · estimate + b``
fitted on ``--calibrate`` *other* random networks (measured in the same rounds; r is unchanged by
a linear map, only the ratio is).

    .venv/bin/python benchmarks/latency_correlation.py --space fasterseg --num 30 --Fch 4 \
        --layers 16 --size 256 512
    .venv/bin/python benchmarks/latency_correlation.py --space darts
    .venv/bin/python benchmarks/latency_correlation.py --space autodeeplab
    .venv/bin/python benchmarks/latency_correlation.py --space darts --C 8 --size 64 64
    .venv/bin/python benchmarks/latency_correlation.py --device cuda --C 16 --layers 8 \
        --size 256 512
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lightning_nas.latency import (
    LatencyTable,
    OpTimer,
    measure_module,
    network_call_config,
    network_estimate,
    steady_allocator,
)
from lightning_nas.latency.estimate import bootstrap_interval, fit_line, pearson, spearman

DEFAULTS: dict[str, dict[str, Any]] = {
    "darts": {"layers": 5, "size": (128, 128), "num": 20},
    "fasterseg": {"layers": 16, "size": (256, 512), "num": 30},
    "autodeeplab": {"layers": 8, "size": (64, 64), "num": 20},
}


def make_space(args: argparse.Namespace) -> tuple[Any, Callable[[Any], nn.Module], Any]:
    """The space, ``genotype -> network`` and ``genotype -> short description``."""
    if args.space == "darts":
        from lightning_nas.methods.darts.network import DartsNetwork
        from lightning_nas.methods.darts.space import DartsSpace

        macro = {"num_classes": args.num_classes, "C": args.C, "layers": args.layers}
        space = DartsSpace(**macro)

        def describe(genotype: Any) -> str:
            return ",".join(
                op.replace("_conv", "").replace("_3x3", "3").replace("_5x5", "5")
                for op, _ in genotype.normal
            )

        return space, lambda g: DartsNetwork(g, **macro), describe
    if args.space == "fasterseg":
        from lightning_nas.methods.fasterseg.network import FasterSegNetwork
        from lightning_nas.methods.fasterseg.space import FasterSegSpace

        macro = {"num_classes": args.num_classes, "Fch": args.Fch}
        space = FasterSegSpace(layers=args.layers, teacher=False, **macro)
        short = {
            "skip": "s",
            "conv": "c",
            "conv_downup": "z",
            "conv_2x": "C",
            "conv_2x_downup": "Z",
        }

        def describe(genotype: Any) -> str:
            return " | ".join(
                "".join(short[o] for o in ops) + " w" + ",".join(map(str, w))
                for ops, w in zip(genotype.ops, genotype.widths)
            )

        return space, lambda g: FasterSegNetwork(g, aux_heads=False, **macro), describe
    from lightning_nas.methods.autodeeplab.network import AutoDeepLabNetwork
    from lightning_nas.methods.autodeeplab.space import AutoDeepLabSpace

    space = AutoDeepLabSpace(
        num_classes=args.num_classes,
        layers=args.layers,
        filter_multiplier=args.filter_multiplier,
        blocks=args.blocks,
    )

    def describe(genotype: Any) -> str:
        return "path " + "".join(map(str, genotype.path))

    def network(genotype: Any) -> nn.Module:
        return AutoDeepLabNetwork(
            genotype, num_classes=args.num_classes, filter_multiplier=args.filter_multiplier
        )

    return space, network, describe


def sample(space: Any, gen: torch.Generator, args: argparse.Namespace) -> Any:
    """A random genotype: random architecture parameters, then the space's derivation."""
    with torch.no_grad():
        # FasterSeg: a per-network tilt towards narrow or wide widths spreads the sample over
        # the latency range (uniform random widths all cost about the same)
        tilt = args.width_tilt * (2 * float(torch.rand((), generator=gen)) - 1)
        for name, alpha in space.arch_parameters().items():
            alpha.copy_(args.alpha_scale * torch.randn(alpha.shape, generator=gen))
            if name.startswith("ratio"):
                alpha.add_(tilt * torch.linspace(-1, 1, alpha.shape[1]))
    return space.derive()


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--space", choices=tuple(DEFAULTS), default="darts")
    p.add_argument("--num", type=int, default=None, help="evaluated networks (20; FasterSeg 30)")
    p.add_argument("--calibrate", type=int, default=10, help="other networks for the a, b fit")
    p.add_argument("--C", type=int, default=16, help="DARTS: initial channels")
    p.add_argument("--Fch", type=int, default=4, help="FasterSeg: base channels (release: 12)")
    p.add_argument("--filter-multiplier", type=int, default=8, help="Auto-DeepLab")
    p.add_argument("--blocks", type=int, default=5, help="Auto-DeepLab: blocks per cell")
    p.add_argument("--layers", type=int, default=None, help="default: 5 / 16 / 8 by space")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per value")
    p.add_argument(
        "--min-run-time", type=float, default=0.05, help="seconds of blocks per value (Timer)"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    p.add_argument("--stat", choices=("min", "median"), default="min", help="over the rounds")
    p.add_argument("--default-malloc", action="store_true", help="leave glibc's thresholds")
    p.add_argument(
        "--clock",
        choices=("auto", "wall", "cpu"),
        default="auto",
        help="cpu: the thread's CPU time; auto: cpu on a CPU with 1 thread, else wall",
    )
    p.add_argument("--alpha-scale", type=float, default=3.0, help="std of the random α")
    p.add_argument(
        "--width-tilt",
        type=float,
        default=6.0,
        help="FasterSeg: width logits += U(-t, t) · linspace(-1, 1) per network",
    )
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for key, value in DEFAULTS[args.space].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steady = device.type == "cpu" and not args.default_malloc and steady_allocator()
    clock = args.clock
    if clock == "auto":
        clock = "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    size = tuple(args.size)
    space, network, describe = make_space(args)

    gen = torch.Generator().manual_seed(args.seed)
    genotypes = [sample(space, gen, args) for _ in range(args.num + args.calibrate)]
    nets = [network(g).to(device).eval() for g in genotypes]
    x = torch.randn(1, 3, *size, generator=gen).to(device)

    configs = {c.key: c for c in space.latency_configs(size)}
    call = network_call_config(size)
    configs[call.key] = call
    timer = OpTimer(
        device,
        warmup=args.warmup,
        min_run_time=args.min_run_time,
        builders=(space.latency_op,),
        clock=clock,
    )
    entry_values: dict[str, list[float]] = {k: [] for k in configs}
    net_values: list[list[float]] = [[] for _ in nets]
    start = time.perf_counter()
    for r in range(args.rounds):  # interleaved: a burst of load hits entries and networks alike
        for key, config in configs.items():
            entry_values[key].append(timer(config))
        for i, net in enumerate(nets):
            net_values[i].append(
                measure_module(
                    net, [x], warmup=args.warmup, min_run_time=args.min_run_time, clock=clock
                )
            )
        print(f"round {r + 1}/{args.rounds} done at {time.perf_counter() - start:.0f} s")
    stat = statistics.median if args.stat == "median" else min
    table = LatencyTable.build(
        configs.values(),
        device=device,
        input_size=size,  # type: ignore[arg-type]
        warmup=args.warmup,
        measure=lambda c: stat(entry_values[c.key]),
        progress=False,
    )
    estimates = [network_estimate(space, table, g) for g in genotypes]
    measured = [stat(v) for v in net_values]
    a, b = fit_line(estimates[args.num :], measured[args.num :]) if args.calibrate > 1 else (1, 0)
    est, ms = estimates[: args.num], measured[: args.num]

    print(f"\n{table}, {len(configs)} entries, {torch.get_num_threads()} thread(s)")
    print(f"network_call entry: {table[call] * 1e3:.1f} us")
    print(f"{'#':>3} {'estimate ms':>12} {'measured ms':>12} {'ratio':>6}  architecture")
    for n, (genotype, e, m) in enumerate(zip(genotypes, est, ms)):
        print(f"{n:>3} {e:12.3f} {m:12.3f} {e / m:6.2f}  {describe(genotype)}")

    r = pearson(est, ms)
    lo, hi = bootstrap_interval(est, ms, resamples=args.resamples, seed=args.seed)
    rho = spearman(est, ms)
    ratio = statistics.fmean(e / m for e, m in zip(est, ms))
    calibrated = statistics.fmean((a * e + b) / m for e, m in zip(est, ms))
    print(
        f"\n{args.space}: N={args.num} layers={args.layers} input={size[0]}x{size[1]} "
        f"device={table.device_name!r}, {args.stat} of {args.rounds} rounds of "
        f"blocked_autorange({args.min_run_time:g} s), {clock} clock, steady malloc={steady}\n"
        f"  Pearson r = {r:.3f} (bootstrap 95% [{lo:.3f}, {hi:.3f}], {args.resamples} "
        f"resamples)\n"
        f"  Spearman rho = {rho:.3f}\n"
        f"  mean estimate/measured = {ratio:.3f}; calibrated on {args.calibrate} other networks "
        f"(measured ~ {a:.3f}*estimate {b:+.3f} ms): {calibrated:.3f}"
    )


if __name__ == "__main__":
    main()
