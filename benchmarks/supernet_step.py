"""Seconds per search step and peak memory of a supernet (Auto-DeepLab or FasterSeg), CPU or CUDA.

One search step is what ``SearchModule.training_step`` does with first-order gradients: an
architecture pass (forward + backward on a trainB batch, Adam step on the architecture) then a
weight pass (forward + backward on a trainA batch, SGD step on the weights), each through the
space's ``set_phase`` / ``search_loss`` hooks (FasterSeg: teacher + sampled student in the
architecture pass; teacher + sampled, widest and narrowest student in the weight pass).
Prints the parameter count, the median seconds per step over ``--steps`` timed steps (after
``--warmup`` untimed ones) and the peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on
CPU the process's peak resident set size (``resource.getrusage``, the whole process, libraries
included) and the RSS before the first step, so their difference is what the steps add.

    .venv/bin/python benchmarks/supernet_step.py                       # F=8, L=12, 64×64, batch 2
    .venv/bin/python benchmarks/supernet_step.py --crop 321 --device cuda  # the paper's setting
    .venv/bin/python benchmarks/supernet_step.py --checkpoint-cells --partial-channels 2
    .venv/bin/python benchmarks/supernet_step.py --profile             # torch.profiler top ops
    .venv/bin/python benchmarks/supernet_step.py --space fasterseg --crop 128 --steps 2
    .venv/bin/python benchmarks/supernet_step.py --space fasterseg --crop 224 448 --device cuda
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from lightning_nas.methods.autodeeplab.space import AutoDeepLabSpace
from lightning_nas.methods.fasterseg.space import FasterSegSpace


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc), or the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB else


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
    parser.add_argument("--checkpoint-cells", action="store_true")
    parser.add_argument("--partial-channels", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    if args.space == "fasterseg":
        space = FasterSegSpace(num_classes=args.num_classes, layers=args.layers or 16, Fch=args.Fch)
        setting = f"FasterSegSpace Fch={args.Fch} L={space.layers} (teacher + sandwich)"
    else:
        space = AutoDeepLabSpace(
            num_classes=args.num_classes,
            layers=args.layers or 12,
            filter_multiplier=args.filter_multiplier,
            checkpoint_cells=args.checkpoint_cells,
            partial_channels=args.partial_channels,
        )
        setting = (
            f"AutoDeepLabSpace F={args.filter_multiplier} L={space.layers} "
            f"checkpoint_cells={args.checkpoint_cells} partial_channels={args.partial_channels}"
        )
    space = space.to(device).train()
    crop_h, crop_w = (args.crop * 2)[:2] if len(args.crop) == 1 else args.crop[:2]
    arch = list(space.arch_parameters().values())
    weights = list(space.weight_parameters())
    w_opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(arch, lr=3e-3, betas=(0.9, 0.999), weight_decay=1e-3)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 3, crop_h, crop_w, device=device)
        y = torch.randint(0, args.num_classes, (args.batch, crop_h, crop_w), device=device)
        return x, y

    data = [(batch(), batch()) for _ in range(args.warmup + args.steps)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(a_batch: tuple[torch.Tensor, ...], w_batch: tuple[torch.Tensor, ...]) -> None:
        # phase 1: architecture pass on trainB; phase 2: weight pass on trainA
        for phase, opt, (x, y) in (("arch", a_opt, a_batch), ("weight", w_opt, w_batch)):
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            space.set_phase(phase)
            space.search_loss(space(x), y, 255).backward()
            opt.step()

    n_params = sum(p.numel() for p in weights)
    print(
        f"{setting} crop={crop_h}x{crop_w} batch={args.batch} device={device} "
        f"threads={torch.get_num_threads()}: {n_params / 1e6:.2f}M weights"
    )
    baseline = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    times = []
    for k, (a_batch, w_batch) in enumerate(data):
        sync()
        t0 = time.perf_counter()
        step(a_batch, w_batch)
        sync()
        if k >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(f"seconds/step (arch pass + weight pass): median {statistics.median(times):.3f}, "
          f"min {min(times):.3f} over {len(times)} steps")  # fmt: skip
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"peak CUDA memory allocated: {peak:.0f} MiB (model + optimizers: {baseline:.0f})")
    else:
        print(f"peak RSS: {peak_rss_mb():.0f} MiB (RSS before the first step: {baseline:.0f})")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            step(*data[-1])
            sync()
        key = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25))


if __name__ == "__main__":
    main()
