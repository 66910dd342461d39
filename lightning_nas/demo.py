"""The ``make demo`` job: search → derive → retrain → evaluate on the embedded synthetic data.

Runs the real command line twice (``lightning fit -c experiments/darts.yaml`` then ``lightning fit
-c experiments/retrain_darts.yaml``) with CPU-sized overrides, then prints the derived genotype,
the retrained network's val mIoU and the mIoU of always predicting the majority class.

Run from the repository root: ``python -m lightning_nas.demo [--out runs/demo]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from lightning_nas import genotypes
from lightning_nas.cli import NASCLI

SPACE = {"C": 8, "layers": 5}


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
    parser.add_argument("--retrain-epochs", type=int, default=20)
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # the CLI runs below get their arguments explicitly
    out = Path(args.out)
    start = time.time()
    common = ["--trainer.accelerator=cpu", "--trainer.devices=1"]

    print(
        f"[1/3] search: DARTS space C={SPACE['C']} layers={SPACE['layers']}, "
        f"{args.search_epochs} epochs on trainA/trainB"
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
        ]
    )
    genotype_path = Path(search.trainer.checkpoint_callback.dirpath) / "genotype.yaml"
    genotype = genotypes.load(genotype_path)

    print(f"[2/3] retrain the derived genotype from scratch, {args.retrain_epochs} epochs")
    retrain = NASCLI(
        args=[
            "fit",
            "-c",
            "experiments/retrain_darts.yaml",
            *common,
            f"--trainer.max_epochs={args.retrain_epochs}",
            f"--trainer.default_root_dir={out / 'retrain'}",
            "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={out / 'retrain'}",
            f"--model.init_args.network.init_args.genotype={genotype_path}",
            *[f"--model.init_args.network.init_args.{k}={v}" for k, v in SPACE.items()],
        ]
    )
    print("[3/3] evaluate the best retrained checkpoint on val")
    results = retrain.trainer.validate(
        retrain.model, retrain.datamodule, ckpt_path="best", verbose=False
    )
    miou = results[0]["val/mIoU"]
    baseline = majority_miou(retrain.datamodule)

    print("\n" + "=" * 72)
    print(f"Derived genotype ({genotype_path}):")
    print(genotype_path.read_text().strip())
    print(f"skip connections in the normal cell: {genotype.num_skip_connections('normal')}")
    print("-" * 72)
    print(f"retrained val mIoU:              {miou:.4f}")
    print(f"majority-class baseline mIoU:    {baseline:.4f}")
    print(f"best checkpoint:                 {retrain.trainer.checkpoint_callback.best_model_path}")
    print(f"total time:                      {time.time() - start:.0f} s")
    print("=" * 72)


if __name__ == "__main__":
    main()
