"""Proxy vs end-to-end training time of the same DPC candidates (the proxy task's speed-up).

For each of N candidates sampled from DPC's space, both evaluators of the search run the same
training schedule on the same synthetic images: the proxy trains the DPC head on cached
MobileNet-v2 features (``CachedFeatureDataModule`` + ``ProxySegmentationModule``), end to end
trains the whole ``DPCNetwork`` (encoder included) on the images. The cache is built once before
the candidates (its time is printed separately; the search pays it once for all candidates).
Prints the median seconds per candidate of each and their ratio, measured side by side in one
run; the issue's target is a ratio ≥ 5 on CPU.

    python benchmarks/dpc_proxy.py [--candidates 3] [--image-size 128] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

os.environ.setdefault("WANDB_MODE", "disabled")

from lightning_nas.data import SyntheticDataModule  # noqa: E402
from lightning_nas.methods.dpc.space import DPCSpace  # noqa: E402
from lightning_nas.proxy import CachedFeatureDataModule, SmpEncoderFeature  # noqa: E402
from lightning_nas.strategies import LightningEvaluator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-train", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = DPCSpace()
    genotypes = [space.sample(study.ask()) for _ in range(args.candidates)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = {
            "root": str(root / "data"),
            "num_train": args.num_train,
            "num_val": 8,
            "image_size": args.image_size,
            "batch_size": 4,
        }
        trainer = {"max_epochs": args.epochs, "accelerator": "cpu", "devices": 1}
        torch.manual_seed(0)
        encoder = SmpEncoderFeature("tu-mobilenetv2_100", output_stride=16)
        cached = CachedFeatureDataModule(
            SyntheticDataModule(**source), encoder, cache_root=str(root / "cache"), progress=False
        )
        start = time.perf_counter()
        cached.prepare_data()
        cache_s = time.perf_counter() - start
        proxy = LightningEvaluator(
            cached,
            trainer=trainer,
            network="lightning_nas.methods.dpc.network.DPCHead",
            network_kwargs={"channels": args.channels},
            module="lightning_nas.proxy.ProxySegmentationModule",
        )
        end_to_end = LightningEvaluator(
            SyntheticDataModule(**source),
            trainer=trainer,
            network_kwargs={"channels": args.channels, "encoder_name": "tu-mobilenetv2_100"},
        )
        times: dict[str, list[float]] = {"proxy": [], "end to end": []}
        for i, genotype in enumerate(genotypes):
            for name, evaluator in (("proxy", proxy), ("end to end", end_to_end)):
                start = time.perf_counter()
                evaluator(genotype, root / f"{name.replace(' ', '_')}{i}")
                times[name].append(time.perf_counter() - start)
    p, e = (statistics.median(times[k]) for k in ("proxy", "end to end"))
    print(
        f"{args.candidates} DPC candidates, {args.epochs} epochs of {args.num_train} images "
        f"{args.image_size}x{args.image_size}, {args.threads} threads:"
    )
    print(f"  feature cache (once, train + val): {cache_s:.1f} s")
    print(f"  proxy (head on cached features):   {p:.2f} s per candidate (median)")
    print(f"  end to end (encoder + head):       {e:.2f} s per candidate (median)")
    print(f"  speed-up of the proxy: {e / p:.1f}x")


if __name__ == "__main__":
    main()
