"""The ``make demo`` job: search → derive → retrain → evaluate on the embedded synthetic data.

Runs the real command lines with CPU-sized overrides: ``lightning fit -c experiments/darts.yaml``
(the search), then ``lightning-nas baseline`` (the derived genotype retrained with
``experiments/retrain_darts.yaml`` over three seeds, and four uniformly random DARTS genotypes
under the identical recipe and budget), then ``lightning-nas report``. Prints the derived
genotype, how far the architecture moved, the searched-versus-random table with its verdict and
the mIoU of always predicting the majority class.

Demo-only setting: the search runs a couple of epochs on ~100 tiny images, a few dozen
architecture steps. At DARTS' architecture learning rate (3e-4, ``experiments/darts.yaml``) α
would barely leave its initialisation in that budget (entropy ratio ≈ 1: the derived cell would
be a draw from the initialisation noise), so the demo raises it to :data:`DEMO_ARCH_LR` and
prints the final entropy ratio of the normal cell's α and whether the derived cell changed
between the first and the last epoch. The recipe itself stays the paper's.

Run from the repository root: ``python -m lightning_nas.demo [--out runs/demo]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from lightning_nas import genotypes
from lightning_nas.baseline.output import table
from lightning_nas.baseline.run import run_baseline
from lightning_nas.cli import NASCLI
from lightning_nas.report import build_report

SPACE = {"C": 8, "layers": 5}
SEEDS = (0, 1, 2)
"""Seeds of the derived genotype's retrains (each random genotype gets one of them)."""
RETRAIN_EPOCHS = 10
DEMO_ARCH_LR = 0.3
"""Architecture learning rate of the demo's short search (demo only; DARTS' is 3e-4)."""


def entropy_ratio(alphas: torch.Tensor) -> float:
    """Mean entropy of ``softmax(alphas)`` rows over ``log(#ops)``: 1 = uniform, 0 = one-hot."""
    probs = torch.softmax(alphas.detach().double(), dim=-1)
    entropy = -(probs * probs.clamp_min(1e-300).log()).sum(-1).mean()
    return float(entropy / math.log(alphas.shape[-1]))


def majority_miou(datamodule: object) -> float:
    """MIoU on the val split of predicting the most frequent training class everywhere."""
    datamodule.setup("fit")
    counts = torch.zeros(datamodule.num_classes, dtype=torch.long)
    for batch in datamodule.val_dataloader():
        m = batch["mask"]
        counts += torch.bincount(m[m != 255].flatten(), minlength=datamodule.num_classes)
    majority = int(counts.argmax())
    metric = MulticlassJaccardIndex(datamodule.num_classes, ignore_index=255, average="macro")
    for batch in datamodule.val_dataloader():
        metric.update(torch.full_like(batch["mask"], majority), batch["mask"])
    return float(metric.compute())


def main(argv: list[str] | None = None) -> None:
    """Run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="output directory")
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--retrain-epochs", type=int, default=RETRAIN_EPOCHS)
    parser.add_argument("--num-random", type=int, default=4, help="random genotypes retrained")
    parser.add_argument(
        "--arch-lr",
        type=float,
        default=DEMO_ARCH_LR,
        help=f"architecture learning rate of the search (demo default {DEMO_ARCH_LR}; DARTS: 3e-4)",
    )
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # the CLI runs below get their arguments explicitly
    out = Path(args.out)
    start = time.time()
    common = ["--trainer.accelerator=cpu", "--trainer.devices=1"]

    print(
        f"[1/3] search: DARTS space C={SPACE['C']} layers={SPACE['layers']}, "
        f"{args.search_epochs} epochs on trainA/trainB, architecture lr {args.arch_lr} (demo only)"
    )
    search = NASCLI(
        args=[
            "fit",
            "-c",
            "experiments/darts.yaml",
            *common,
            f"--trainer.max_epochs={args.search_epochs}",
            f"--trainer.default_root_dir={out / 'search'}",
            "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={out / 'search'}",
            *[f"--model.init_args.space.init_args.{k}={v}" for k, v in SPACE.items()],
            f"--model.init_args.weight_lr_scheduler.init_args.T_max={args.search_epochs}",
            f"--model.init_args.arch_optimizer.init_args.lr={args.arch_lr}",
        ]
    )
    ckpt_dir = Path(search.trainer.checkpoint_callback.dirpath)
    genotype_path = ckpt_dir / "genotype.yaml"
    genotype = genotypes.load(genotype_path)
    ratio = entropy_ratio(search.model.space.alphas_normal)
    first = genotypes.load(ckpt_dir / "genotype_epoch=000.yaml")
    moved = first.normal != genotype.normal

    search_minutes = (time.time() - start) / 60
    shutil.rmtree(out / "search" / "baseline", ignore_errors=True)  # an earlier demo's

    print(
        f"[2/3] baseline: retrain the derived genotype over seeds {list(SEEDS)} and "
        f"{args.num_random} uniformly random DARTS genotypes, {args.retrain_epochs} epochs each, "
        "identical recipe (experiments/retrain_darts.yaml)"
    )
    result = run_baseline(
        genotype_path,
        ["experiments/retrain_darts.yaml"],
        seeds=SEEDS,
        num_random=args.num_random,
        random_seed=0,
        overrides=[
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            f"trainer.max_epochs={args.retrain_epochs}",
            *[f"model.init_args.network.init_args.{k}={v}" for k, v in SPACE.items()],
        ],
        out=out / "search" / "baseline",
        search_cost=search_minutes,
        printer=None,
    )
    print("[3/3] report")
    report = build_report(out / "search")
    from lightning_nas.data import SyntheticDataModule

    majority = majority_miou(SyntheticDataModule(root="data/synthetic", search=False))

    print("\n" + "=" * 72)
    print(f"Derived genotype ({genotype_path}):")
    print(genotype_path.read_text().strip())
    print(f"skip connections in the normal cell: {genotype.num_skip_connections('normal')}")
    print(
        f"α of the normal cell: final entropy ratio {ratio:.3f} (1 = uniform); derived normal "
        f"cell {'changed' if moved else 'unchanged'} between epoch 0 and epoch "
        f"{args.search_epochs - 1}"
    )
    print("-" * 72)
    print(table(result))
    print(f"majority-class predictor:  {majority:>10.4f}")
    print("-" * 72)
    print(f"baseline results:  {out / 'search' / 'baseline'} (baseline.json, .csv, .png)")
    print(f"report:            {report}")
    print(f"total time:        {time.time() - start:.0f} s")
    print("=" * 72)


if __name__ == "__main__":
    main()
