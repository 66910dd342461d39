"""Samples per second of the training data pipeline, for each dataset layout (fake trees).

Writes fake Cityscapes / VOC / ADE20K trees at the real image sizes (2048x1024, ~500x375,
~683x512) with the generators of ``tests/data/fake_datasets.py``, then times, per dataset:

* ``decode``: reading and label-mapping one sample in the main process (OpenCV / Pillow),
* ``pipeline``: the DataModule's real training loader (decode + random scale / pad / crop /
  flip / normalise + collate) with ``--workers`` worker processes, samples/s over
  ``--batches`` batches after one warm-up batch,

with each dataset's retrain protocol (Cityscapes 769 crops at full size, VOC 513, ADE20K long
side 513 then 513 crops), and first the time to render the embedded synthetic dataset at its
default size (192 + 48 scenes, 64 px: what ``make demo`` and the tests render). Images are
random (noise PNG/JPEG decode slower than photos), so the numbers are a lower bound. Run::

    .venv/bin/python benchmarks/data_pipeline.py --workers 4 --batches 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "data"))

from fake_datasets import make_ade20k, make_cityscapes, make_voc  # noqa: E402

from lightning_nas.data import ADE20KDataModule, CityscapesDataModule, VOCDataModule  # noqa: E402


def build(root: Path, num: int) -> dict[str, tuple[type, Path]]:
    """Write the three fake trees under ``root`` (``num`` training images each)."""
    trees = {
        "cityscapes": (CityscapesDataModule, root / "cityscapes"),
        "voc": (VOCDataModule, root / "voc"),
        "ade20k": (ADE20KDataModule, root / "ade20k"),
    }
    if not (root / "cityscapes").exists():
        make_cityscapes(root / "cityscapes", per_city=max(num // 2, 1), size=(1024, 2048))
        make_voc(root / "voc", num_train=num, sizes=((375, 500), (500, 375), (333, 500)))
        make_ade20k(root / "ade20k", num_train=num, sizes=((512, 683), (683, 512), (480, 640)))
    return trees


def measure(dm_class: type, root: Path, workers: int, batch_size: int, batches: int) -> dict:
    dm = dm_class(
        root=str(root),
        num_workers=workers,
        batch_size=batch_size,
        pin_memory=False,
        persistent_workers=True,  # the timing loop re-iterates: do not re-spawn workers
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    dataset = loader.dataset
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset.load(i)
    decode = len(dataset) / (time.perf_counter() - start)

    torch.manual_seed(0)
    seen, shape = 0, ()
    while seen < batches + 1:  # re-iterate (persistent workers) until enough batches
        for batch in loader:
            if seen == 0:
                start = time.perf_counter()  # after the warm-up batch (worker start-up)
            seen += 1
            shape = tuple(batch["image"].shape)
            if seen == batches + 1:
                break
    elapsed = time.perf_counter() - start
    return {"decode": decode, "pipeline": batches * batch_size / elapsed, "batch": shape}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per dataset")
    parser.add_argument("--images", type=int, default=16, help="training images per tree")
    parser.add_argument("--root", type=Path, help="reuse / keep the fake trees here")
    args = parser.parse_args()

    from lightning_nas.data.synthetic import render_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        render_dataset(Path(tmp) / "synthetic", num_train=192, num_val=48, image_size=64, seed=0)
        elapsed = time.perf_counter() - start
        print(f"synthetic default dataset (240 scenes, 64 px) rendered in {elapsed:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        start = time.perf_counter()
        trees = build(root, args.images)
        print(f"fake trees ready in {time.perf_counter() - start:.1f} s under {root}")
        print(f"{'dataset':<12}{'decode/s':>10}{'pipeline/s':>12}  batch ({args.workers} workers)")
        for name, (dm_class, tree) in trees.items():
            r = measure(dm_class, tree, args.workers, args.batch_size, args.batches)
            print(f"{name:<12}{r['decode']:>10.1f}{r['pipeline']:>12.1f}  {r['batch']}")


if __name__ == "__main__":
    main()
