"""Seconds per search step and peak memory of a supernet (Auto-DeepLab or FasterSeg), CPU or CUDA.

One search step is what ``SearchModule.training_step`` does with first-order gradients: an
architecture pass (forward + backward on a trainB batch, Adam step on the architecture) then a
weight pass (forward + backward on a trainA batch, SGD step on the weights), each through the
space's ``set_phase`` / ``search_loss`` hooks (FasterSeg: teacher + sampled student in the
architecture pass; teacher + sampled, widest and narrowest student in the weight pass).

Without ``--option`` it prints one table, one row per memory option, each measured in its own
subprocess (peak RSS is per process): the peak memory — on CPU the process's peak resident set
size (``resource.getrusage``: the whole process, libraries included), on CUDA
``torch.cuda.max_memory_allocated`` —, what the steps add to the memory held before the first
step, the median seconds per step over ``--steps`` timed steps (after ``--warmup`` untimed ones)
and the ratio of that median to the default row's. Options (``docs/memory.md``): cell
checkpointing (exact), PC-DARTS partial channels and bf16 autocast (both change the numerics),
for Auto-DeepLab, ``before`` = the default recipe as it was (the previous, unfused kernels, and
weight gradients computed in the architecture pass; for FasterSeg only the latter), and
``atrous=separable`` (the public port's ops: another search space, for scale).

``--compare`` times the default step as it was (``before``) and as it is (``after``) in one
process, steps interleaved, and prints the before/after ratio.
``--profile`` prints torch.profiler's top ops of one default step.

    .venv/bin/python benchmarks/supernet_step.py                       # table: F=8, L=12, 64×64
    .venv/bin/python benchmarks/supernet_step.py --space fasterseg     # FasterSeg's table
    .venv/bin/python benchmarks/supernet_step.py --compare --steps 6   # before/after, one run
    .venv/bin/python benchmarks/supernet_step.py --option checkpoint_cells   # one row, here
    .venv/bin/python benchmarks/supernet_step.py --profile             # torch.profiler top ops
    .venv/bin/python benchmarks/supernet_step.py --crop 321 --device cuda --option default
    .venv/bin/python benchmarks/supernet_step.py --space fasterseg --crop 224 448 --device cuda

Set ``OMP_NUM_THREADS`` (or ``--threads``) for steady CPU timings; every subprocess inherits it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

import lightning_nas.methods.autodeeplab.space as adl
from lightning_nas.bilevel import weights_frozen
from lightning_nas.methods.autodeeplab.space import AutoDeepLabSpace
from lightning_nas.methods.fasterseg.space import FasterSegSpace

#: option name → (space keyword arguments, bf16 autocast, previous kernels)
OPTIONS: dict[str, dict[str, tuple[dict[str, Any], bool, bool]]] = {
    "autodeeplab": {
        "default": ({}, False, False),
        "before (unfused, weight grads in arch pass)": ({}, False, True),
        "checkpoint_cells": ({"checkpoint_cells": True}, False, False),
        "partial_channels=2": ({"partial_channels": 2}, False, False),
        "checkpoint_cells+partial_channels=2": (
            {"checkpoint_cells": True, "partial_channels": 2},
            False,
            False,
        ),
        "bf16 autocast": ({}, True, False),
        "checkpoint_cells+bf16 autocast": ({"checkpoint_cells": True}, True, False),
        # not the release's search space: the public port's separable atrous ops (12.7M weights)
        "atrous=separable": ({"atrous": "separable"}, False, False),
        "atrous=separable+checkpoint_cells": (
            {"atrous": "separable", "checkpoint_cells": True},
            False,
            False,
        ),
    },
    "fasterseg": {
        "default": ({}, False, False),
        "before (weight grads in arch pass)": ({}, False, True),
        "bf16 autocast": ({}, True, False),
    },
}


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc), or the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """The process's peak resident set size in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB else


@contextlib.contextmanager
def previous_kernels(previous: bool) -> Iterator[None]:
    """Run Auto-DeepLab's cells with the previous (unfused) kernels when ``previous``."""
    saved = adl._FUSED_KERNELS
    adl._FUSED_KERNELS = not previous
    try:
        yield
    finally:
        adl._FUSED_KERNELS = saved


class Bench:
    """A supernet, its two optimizers and ``warmup + steps`` pairs of random batches."""

    def __init__(self, args: argparse.Namespace, space_kwargs: dict[str, Any]) -> None:
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        if args.space == "fasterseg":
            space: Any = FasterSegSpace(
                num_classes=args.num_classes, layers=args.layers or 16, Fch=args.Fch, **space_kwargs
            )
            self.setting = f"FasterSegSpace Fch={args.Fch} L={space.layers} (teacher + sandwich)"
        else:
            space = AutoDeepLabSpace(
                num_classes=args.num_classes,
                layers=args.layers or 12,
                filter_multiplier=args.filter_multiplier,
                **space_kwargs,
            )
            self.setting = f"AutoDeepLabSpace F={args.filter_multiplier} L={space.layers}"
        self.space = space.to(self.device).train()
        crop = args.crop * 2 if len(args.crop) == 1 else args.crop
        self.crop = (crop[0], crop[1])
        weights = list(self.space.weight_parameters())
        self.weights = weights
        self.n_weights = sum(p.numel() for p in weights)
        self.w_opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
        self.a_opt = torch.optim.Adam(
            list(self.space.arch_parameters().values()),
            lr=3e-3,
            betas=(0.9, 0.999),
            weight_decay=1e-3,
        )
        self.data = [
            (self._batch(args), self._batch(args)) for _ in range(args.warmup + args.steps)
        ]

    def _batch(self, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 3, *self.crop, device=self.device)
        y = torch.randint(0, args.num_classes, (args.batch, *self.crop), device=self.device)
        return x, y

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self, k: int, bf16: bool = False, frozen: bool = True) -> None:
        """Search step ``k``: architecture pass on trainB, then weight pass on trainA.

        ``frozen``: the architecture pass computes no weight gradient, as ``SearchModule`` does
        on one process (``lightning_nas.bilevel.weights_frozen``); ``False``: as before.
        """
        a_batch, w_batch = self.data[k]
        for phase, opt, (x, y) in (("arch", self.a_opt, a_batch), ("weight", self.w_opt, w_batch)):
            self.w_opt.zero_grad(set_to_none=True)
            self.a_opt.zero_grad(set_to_none=True)
            self.space.set_phase(phase)
            autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
            with weights_frozen(self.weights, enabled=frozen and phase == "arch"), autocast:
                loss = self.space.search_loss(self.space(x), y, 255)
                loss.backward()
            opt.step()

    def timed(self, k: int, run: Callable[[int], None]) -> float:
        self.sync()
        t0 = time.perf_counter()
        run(k)
        self.sync()
        return time.perf_counter() - t0


def measure(args: argparse.Namespace, option: str) -> dict[str, Any]:
    """Peak memory and median seconds per step of one option, in this process."""
    space_kwargs, bf16, previous = OPTIONS[args.space][option]
    bench = Bench(args, space_kwargs)
    cuda = bench.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(bench.device)
        before = torch.cuda.memory_allocated(bench.device) / 2**20
    else:
        before = rss_mb()
    times = []
    with previous_kernels(previous):
        for k in range(args.warmup + args.steps):
            t = bench.timed(k, lambda k: bench.step(k, bf16, frozen=not previous))
            if k >= args.warmup:
                times.append(t)
    peak = torch.cuda.max_memory_allocated(bench.device) / 2**20 if cuda else peak_rss_mb()
    return {
        "option": option,
        "setting": bench.setting,
        "weights": bench.n_weights,
        "peak": peak,
        "before": before,
        "median": statistics.median(times),
        "min": min(times),
    }


def table(args: argparse.Namespace, argv: list[str]) -> None:
    """One subprocess per option of ``args.space``; print their rows as one table."""
    rows = []
    for option in OPTIONS[args.space]:
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--option", option, "--json"],
            capture_output=True,
            text=True,
            env={**os.environ},
            check=False,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode or not lines:
            print(f"{option}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1]))
    if not rows:
        sys.exit(1)
    memory = "peak CUDA MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    crop = "x".join(map(str, (args.crop * 2)[:2] if len(args.crop) == 1 else args.crop[:2]))
    print(
        f"{rows[0]['setting']} crop={crop} batch={args.batch} device={args.device} "
        f"threads={args.threads or os.environ.get('OMP_NUM_THREADS', 'default')}: "
        f"{rows[0]['weights'] / 1e6:.2f}M weights; {args.steps} timed steps after "
        f"{args.warmup} untimed, each option in its own process"
    )
    default = next((r["median"] for r in rows if r["option"] == "default"), rows[0]["median"])
    width = max(len(r["option"]) for r in rows)
    print(
        f"{'option':<{width}}  {memory:>12}  {'added by steps':>14}  {'before steps':>12}  "
        f"{'median s/step':>13}  {'ratio':>5}"
    )
    for r in rows:
        print(
            f"{r['option']:<{width}}  {r['peak']:12.0f}  {r['peak'] - r['before']:14.0f}  "
            f"{r['before']:12.0f}  {r['median']:13.3f}  {r['median'] / default:5.2f}"
        )


def compare(args: argparse.Namespace) -> None:
    """The default step as it was and as it is, interleaved, in one process."""
    bench = Bench(args, {})
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for k in range(args.warmup + args.steps):
        order = (True, False) if k % 2 == 0 else (False, True)  # neither always goes first
        for previous in order:
            c0 = time.process_time()
            with previous_kernels(previous):
                t = bench.timed(k, lambda k, p=previous: bench.step(k, frozen=not p))
            if k >= args.warmup:
                wall[previous].append(t)
                cpu[previous].append(time.process_time() - c0)
    print(
        f"{bench.setting} crop={bench.crop[0]}x{bench.crop[1]} batch={args.batch} "
        f"device={bench.device} threads={torch.get_num_threads()}: default step, "
        f"{args.steps} interleaved pairs after {args.warmup} untimed"
    )
    print(f"{'':26}{'median s/step':>14}{'min':>8}{'median CPU s':>14}")
    for previous, name in ((True, "before"), (False, "after")):
        print(
            f"{name:26}{statistics.median(wall[previous]):14.3f}{min(wall[previous]):8.3f}"
            f"{statistics.median(cpu[previous]):14.3f}"
        )
    ratio = statistics.median(wall[True]) / statistics.median(wall[False])
    cpu_ratio = statistics.median(cpu[True]) / statistics.median(cpu[False])
    print(
        f"before/after: {ratio:.2f}x wall-clock, {cpu_ratio:.2f}x CPU time "
        f"(step time -{100 * (1 - 1 / ratio):.0f} %)"
    )


def profile(args: argparse.Namespace) -> None:
    """torch.profiler's top ops of one default step (after the warm-up steps)."""
    from torch.profiler import ProfilerActivity, profile

    bench = Bench(args, {})
    for k in range(args.warmup):
        bench.step(k)
    activities = [ProfilerActivity.CPU]
    if bench.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        bench.step(args.warmup)
        bench.sync()
    key = "cuda_time_total" if bench.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=("autodeeplab", "fasterseg"), default="autodeeplab")
    parser.add_argument("--crop", type=int, nargs="+", default=[64], help="crop H [W] in pixels")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--filter-multiplier", "-F", type=int, default=8)
    parser.add_argument(
        "--layers", type=int, default=None, help="12 (Auto-DeepLab), 16 (FasterSeg)"
    )
    parser.add_argument("--Fch", type=int, default=12, help="FasterSeg base channels")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--option", default=None, help="measure one option in this process")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--compare", action="store_true", help="before/after, one process")
    mode.add_argument("--profile", action="store_true", help="print torch.profiler's top ops")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.option is not None and args.option not in OPTIONS[args.space]:
        parser.error(f"--option: one of {', '.join(map(repr, OPTIONS[args.space]))}")
    if args.compare:
        compare(args)
    elif args.profile:
        profile(args)
    elif args.option is not None:
        row = measure(args, args.option)
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['setting']} option={row['option']}: median {row['median']:.3f} s/step "
                f"(min {row['min']:.3f}); peak {row['peak']:.0f} MiB, "
                f"{row['peak'] - row['before']:.0f} added by the steps"
            )
    else:
        table(args, sys.argv[1:])


if __name__ == "__main__":
    main()
