"""The synthetic dataset: rendering, layout, search split, augmentation determinism, baseline."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassJaccardIndex

from lightning_nas.data import SegmentationDataset, SyntheticDataModule, seed_worker
from lightning_nas.data.synthetic import render_dataset

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataModule:
    """A 16 + 6 scene dataset with random crops, scales and flips, rendered once."""
    dm = SyntheticDataModule(
        root=str(tmp_path_factory.mktemp("syn") / "synthetic"),
        num_train=16,
        num_val=6,
        batch_size=4,
        crop_size=48,
        scale_range=(0.75, 1.25),
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_layout_and_meta(small: SyntheticDataModule) -> None:
    root = Path(small.root)
    assert sorted(p.name for p in root.iterdir()) == ["images", "labels", "meta.json"]
    for split, num in (("train", 16), ("val", 6)):
        images = sorted((root / "images" / split).iterdir())
        labels = sorted((root / "labels" / split).iterdir())
        assert [p.name for p in images] == [p.name for p in labels]
        assert len(images) == num
        assert images[0].name == f"{split}_00000.png"
        assert cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED).shape == (64, 64, 3)
        label = cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED)
        assert label.shape == (64, 64)
        assert label.dtype == np.uint8
    meta = json.loads((root / "meta.json").read_text())
    assert meta["seed"] == 0
    assert meta["num_train"] == 16
    assert meta["num_val"] == 6
    assert meta["image_size"] == 64
    assert meta["version"] >= 1
    assert meta["class_names"] == small.class_names
    assert len(meta["palette"]) == 6
    # No temporary or outdated trees left beside the dataset.
    assert [p.name for p in root.parent.iterdir()] == ["synthetic"]


def test_rendering_is_deterministic_from_the_seed(tmp_path: Path) -> None:
    render_dataset(tmp_path / "a", num_train=6, num_val=2, image_size=64, seed=1)
    render_dataset(tmp_path / "b", num_train=6, num_val=2, image_size=64, seed=1)
    render_dataset(tmp_path / "c", num_train=6, num_val=2, image_size=64, seed=2)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["images/train/train_00000.png"] != c["images/train/train_00000.png"]
    # Scene i depends on (seed, split, i) only: more scenes keep the first ones.
    render_dataset(tmp_path / "d", num_train=8, num_val=2, image_size=64, seed=1)
    assert (
        _files(tmp_path / "d")["images/train/train_00005.png"] == a["images/train/train_00005.png"]
    )


def test_full_default_dataset_renders_every_scene(tmp_path: Path) -> None:
    # its speed is printed by benchmarks/data_pipeline.py (tests never assert on time)
    render_dataset(tmp_path / "full", num_train=192, num_val=48, image_size=64, seed=0)
    files = _files(tmp_path / "full")
    for split, n in (("train", 192), ("val", 48)):
        for kind in ("images", "labels"):
            assert sum(k.startswith(f"{kind}/{split}/") for k in files) == n, (kind, split)


def test_prepare_data_rerenders_only_on_change(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    SyntheticDataModule(root=str(root), num_train=4, num_val=2).prepare_data()
    stamp = (root / "meta.json").stat().st_mtime_ns
    SyntheticDataModule(root=str(root), num_train=4, num_val=2).prepare_data()
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    dm = SyntheticDataModule(root=str(root), num_train=6, num_val=2, seed=3)
    with pytest.raises(RuntimeError, match="prepare_data"):
        dm.setup("fit")  # stale tree: refuse to read it
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.pairs("train")) == 6
    assert json.loads((root / "meta.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_refuses_to_overwrite_other_data(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        SyntheticDataModule(root=str(tmp_path / "mine"), num_train=2, num_val=1).prepare_data()
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"


def test_concurrent_prepare_data(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    SyntheticDataModule(root=str(root), num_train=3, num_val=1, seed=9).prepare_data()  # stale
    modules = [SyntheticDataModule(root=str(root), num_train=5, num_val=2) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda dm: dm.prepare_data(), modules))
    modules[0].setup("fit")
    assert len(modules[0].pairs("train")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_missing_root_before_prepare_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        SyntheticDataModule(root=str(tmp_path / "absent")).setup("fit")


def test_items_and_batches(small: SyntheticDataModule) -> None:
    assert small.num_classes == 6
    assert small.class_names[2:4] == ["small_disc", "large_disc"]
    item = small.val_dataloader().dataset[0]
    assert item["image"].dtype == torch.float32
    assert item["image"].shape == (3, 64, 64)
    assert item["mask"].dtype == torch.int64
    assert item["mask"].shape == (64, 64)
    assert item["name"] == "val_00000"
    batch = next(iter(small.train_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48)
    assert batch["mask"].shape == (4, 48, 48)
    assert len(batch["name"]) == 4
    values = torch.cat([b["mask"].flatten() for b in small.val_dataloader()]).unique().tolist()
    assert set(values) == {0, 1, 2, 3, 4, 5, 255}


def test_search_split(small: SyntheticDataModule) -> None:
    twin = SyntheticDataModule(root=small.root, num_train=16, num_val=6, search=True)
    twin.setup("fit")
    loaders = twin.train_dataloader()
    assert isinstance(loaders, dict)
    assert set(loaders) == {"weights", "arch"}
    weights = set(loaders["weights"].dataset.pairs)
    arch = set(loaders["arch"].dataset.pairs)
    assert len(weights) == len(arch) == 8
    assert weights.isdisjoint(arch)
    assert weights | arch == set(small.pairs("train"))
    other = SyntheticDataModule(root=small.root, num_train=16, num_val=6, search=True)
    assert other.search_split() == twin.search_split()
    reseeded = SyntheticDataModule(
        root=small.root, num_train=16, num_val=6, search=True, search_split_seed=1
    )
    assert reseeded.search_split() != twin.search_split()
    # Lightning's CombinedLoader pairs one batch of each half per step.
    step = next(iter(CombinedLoader(loaders, "max_size_cycle")))[0]
    assert set(step) == {"weights", "arch"}
    assert step["arch"]["mask"].shape == (8, 64, 64)


def _epoch(dm: SyntheticDataModule, seed: int, iter_first: bool = False) -> list[torch.Tensor]:
    """One epoch's batches, flattened; with ``iter_first`` the iterator exists before the seed."""
    loader = dm.train_dataloader()
    iterator = iter(loader) if iter_first else None
    torch.manual_seed(seed)
    return [
        torch.cat([b["image"].flatten(), b["mask"].flatten().float()])
        for b in (iterator or iter(loader))
    ]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_epoch_is_fixed_by_the_global_seed(small: SyntheticDataModule, num_workers: int) -> None:
    dm = SyntheticDataModule(
        root=small.root, num_train=16, num_val=6, batch_size=4, crop_size=48,
        scale_range=(0.75, 1.25), num_workers=num_workers,
    )  # fmt: skip
    dm.setup("fit")
    first, again, other = _epoch(dm, 7), _epoch(dm, 7), _epoch(dm, 8)
    assert len(first) == 4
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # Lightning creates some epochs' iterators before `on_train_epoch_start`: the data must
    # still follow the seed set after that.
    early = _epoch(dm, 7, iter_first=True)
    assert all(torch.equal(a, b) for a, b in zip(first, early, strict=True))


class _ReseedingModel(L.LightningModule):
    """Reseeds torch at every epoch start (as the search module does) and records batches."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(3, 6, 1)
        self.seen: list[tuple[int, torch.Tensor]] = []

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(100 + self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen += [
            (self.current_epoch, b["image"].sum() + b["mask"].sum()) for b in batch.values()
        ]
        weights = batch["weights"]
        return torch.nn.functional.cross_entropy(
            self.head(weights["image"]), weights["mask"], ignore_index=255
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_epoch_sees_the_same_batches(
    small: SyntheticDataModule, tmp_path: Path, num_workers: int
) -> None:
    def fit(max_epochs: int, ckpt_path: str | None = None) -> tuple[L.Trainer, _ReseedingModel]:
        dm = SyntheticDataModule(
            root=small.root, num_train=16, num_val=6, batch_size=4, crop_size=48,
            scale_range=(0.75, 1.25), search=True, num_workers=num_workers,
        )  # fmt: skip
        trainer = L.Trainer(
            max_epochs=max_epochs, limit_val_batches=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
            default_root_dir=tmp_path,
        )  # fmt: skip
        model = _ReseedingModel()
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return trainer, model

    _, straight = fit(2)
    trainer, _ = fit(1)
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    _, resumed = fit(2, ckpt_path=str(tmp_path / "epoch0.ckpt"))
    expected = [s for epoch, s in straight.seen if epoch == 1]
    assert len(expected) == 4  # 2 steps x (weights, arch)
    assert torch.equal(torch.stack(expected), torch.stack([s for _, s in resumed.seen]))


def test_workers_augment_differently(small: SyntheticDataModule) -> None:
    # Eight copies of one scene, no shuffle: worker 0 makes batch 0, worker 1 batch 1.
    pairs = [small.pairs("train")[0]] * 8

    def batches(worker_init_fn: object) -> list[torch.Tensor]:
        dataset = SegmentationDataset(pairs, small.train_transform(), seed_from_torch=True)
        loader = DataLoader(dataset, batch_size=4, num_workers=2, worker_init_fn=worker_init_fn)
        torch.manual_seed(0)
        return [b["image"] for b in loader]

    seeded = batches(seed_worker)
    assert not torch.equal(seeded[0], seeded[1])
    unseeded = batches(None)  # the albumentations pitfall this guards against
    assert torch.equal(unseeded[0], unseeded[1])


def test_majority_class_baseline_is_low(tmp_path: Path) -> None:
    dm = SyntheticDataModule(root=str(tmp_path / "synthetic"))
    dm.prepare_data()
    dm.setup("fit")
    counts = torch.zeros(256, dtype=torch.long)
    train = dm.train_dataloader().dataset
    for i in range(len(train)):
        label = torch.from_numpy(train.load(i)[1].ravel().astype(np.int64))
        counts += torch.bincount(label, minlength=256)
    majority = int(counts[:6].argmax())
    assert dm.class_names[majority] == "ground"
    metric = MulticlassJaccardIndex(num_classes=6, ignore_index=255, average="macro")
    for batch in dm.val_dataloader():
        metric.update(torch.full_like(batch["mask"], majority), batch["mask"])
    miou = float(metric.compute())
    assert miou < 0.25
    assert miou == pytest.approx(0.070, abs=0.0005)  # the value stated in the docstring


class _PixelModel(L.LightningModule):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(3, num_classes, 1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = sum(
            torch.nn.functional.cross_entropy(self.head(b["image"]), b["mask"], ignore_index=255)
            for b in batch.values()
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_runs_search_mode(small: SyntheticDataModule) -> None:
    dm = SyntheticDataModule(root=small.root, num_train=16, num_val=6, batch_size=4, search=True)
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(_PixelModel(dm.num_classes), datamodule=dm)
    assert trainer.global_step == 2
    assert trainer.datamodule.hparams["search"] is True


def test_yaml_overlay_instantiates() -> None:
    config = yaml.safe_load((REPO / "experiments" / "data" / "synthetic.yaml").read_text())
    data = config["data"]
    assert data["class_path"] == "lightning_nas.data.SyntheticDataModule"
    assert "search" not in data["init_args"]
    dm = SyntheticDataModule(**data["init_args"])
    assert dm.num_classes == 6
    assert not dm.search
