"""Cityscapes: layout, official label mapping, protocol, search shards, bad input, submission."""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from fake_datasets import OracleModel, make_cityscapes, predict
from lightning.fabric.utilities.data import _update_dataloader
from torch.utils.data import DistributedSampler
from torchmetrics.classification import MulticlassJaccardIndex

from callbacks.prediction_writer import PredictionWriter
from lightning_nas.data import CityscapesDataModule, InvalidSampleError, SkippedSamplesWarning
from lightning_nas.data.cityscapes import ID_TO_TRAIN_ID


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cityscapes(tmp_path_factory.mktemp("cs") / "cityscapes", coarse=True)


@pytest.fixture
def fresh(tree: Path, tmp_path: Path) -> Path:
    """A copy of the tree that a test may damage."""
    return Path(shutil.copytree(tree, tmp_path / "cityscapes"))


def dm_(root: Path, **kwargs) -> CityscapesDataModule:
    kwargs = {"crop_size": 32, "long_side": None, "batch_size": 2, "num_workers": 0,
              "pin_memory": False, **kwargs}  # fmt: skip
    return CityscapesDataModule(root=str(root), **kwargs)


def test_metadata_without_disk(tmp_path: Path) -> None:
    dm = CityscapesDataModule(root=str(tmp_path / "absent"))
    assert dm.num_classes == 19
    assert dm.ignore_index == 255
    official = sorted((lb for lb in cs_labels if 0 <= lb.trainId < 255), key=lambda x: x.trainId)
    assert dm.class_names == [lb.name for lb in official]
    assert dm.palette == [tuple(lb.color) for lb in official]
    assert (dm.crop_size, dm.long_side) == (769, None)
    search = CityscapesDataModule(root=str(tmp_path / "absent"), search=True)
    assert (search.crop_size, search.long_side) == (321, 1024)  # half resolution
    assert CityscapesDataModule(root="x", search=True, crop_size=None).crop_size is None


def test_label_mapping_pixel_for_pixel(tree: Path) -> None:
    dm = dm_(tree)
    dm.setup("validate")
    dataset = dm.val_dataloader().dataset
    assert len(dataset) == 2
    for i, (_, label_path) in enumerate(dataset.pairs):
        raw = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
        assert set(np.unique(raw).tolist()) <= set(range(34))
        expected = np.full(raw.shape, 255, np.int64)
        for lb in cs_labels:
            if lb.id >= 0 and 0 <= lb.trainId < 255:
                expected[raw == lb.id] = lb.trainId
        assert torch.equal(dataset[i]["mask"], torch.from_numpy(expected))
    assert ID_TO_TRAIN_ID.tolist().count(255) == 34 - 19


def test_split_sizes_and_names(tree: Path) -> None:
    fine = dm_(tree)
    fine.setup()
    assert len(fine.pairs("train")) == 4
    assert len(fine.pairs("val")) == 2
    assert len(fine.images("val")) == 2
    first_image, first_label = fine.pairs("train")[0]
    assert first_image.endswith("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png")
    assert first_label.endswith("gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    assert len(dm_(tree, train_set="coarse").pairs("train")) == 2
    both = dm_(tree, train_set="fine+coarse").pairs("train")
    assert len(both) == 6
    assert sum("gtCoarse/train_extra" in label for _, label in both) == 2
    assert len(dm_(tree, predict_split="test").images("test")) == 2
    with pytest.raises(ValueError, match="splits are"):
        fine.list_pairs("training")


def test_train_crops_pad_with_ignore(tree: Path) -> None:
    dm = dm_(tree, crop_size=(80, 144), scale_range=(1.0, 1.0), batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 80, 144)
    assert batch["mask"].shape == (4, 80, 144)
    # the 64 x 128 image keeps its top-left corner (DeepLab pads bottom / right; a flip moves
    # the 16 padded columns to the left); padded pixels are 0 in the normalised image
    mask, image = batch["mask"], batch["image"]
    assert (mask[:, 64:] == 255).all() and (image[:, :, 64:] == 0.0).all()
    for m, x in zip(mask, image, strict=True):
        pad = slice(128, None) if (m[:, 128:] == 255).all() else slice(None, 16)
        assert (m[:, pad] == 255).all() and (x[:, :, pad] == 0.0).all()
    assert mask[:, :64, 16:128].lt(19).any()
    # random scale + crop: fixed shape, values still train ids or 255
    dm = dm_(tree, crop_size=48, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48)
    assert set(batch["mask"].unique().tolist()) <= set(range(19)) | {255}


def test_half_resolution_search_protocol(tree: Path) -> None:
    dm = dm_(tree, search=True, long_side=64, crop_size=24)
    dm.setup("fit")
    loaders = dm.train_dataloader()
    assert next(iter(loaders["weights"]))["image"].shape[-2:] == (24, 24)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == val["mask"].shape[-2:] == (32, 64)


def test_two_workers_give_different_crops(tree: Path) -> None:
    dm = dm_(tree, num_workers=2, batch_size=2, crop_size=32)
    dm.setup("fit")
    dm._pairs_cache["train"] = [dm.pairs("train")[0]] * 4  # one image: only crops can differ
    torch.manual_seed(0)
    first, second = (b["image"] for b in dm.train_dataloader())  # worker 0, worker 1
    assert not torch.equal(first, second)


def test_search_halves_and_ddp_shards(tree: Path) -> None:
    dm = dm_(tree, search=True, batch_size=1)  # 4 images: halves of 2, shards of 1
    dm.setup("fit")
    loaders = dm.train_dataloader()
    halves = {
        key: {Path(p).stem for p, _ in loader.dataset.pairs} for key, loader in loaders.items()
    }
    assert halves["weights"].isdisjoint(halves["arch"])
    assert halves["weights"] | halves["arch"] == {Path(p).stem for p, _ in dm.pairs("train")}
    # every rank computes the same split (it depends on the seed only)
    assert dm_(tree, search=True).search_split() == dm.search_split()
    # Lightning gives each loader a DistributedSampler; each rank reads a disjoint shard
    for key, loader in loaders.items():
        shards = []
        for rank in (0, 1):
            sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, seed=0)
            sharded = _update_dataloader(loader, sampler)
            assert type(sharded) is type(loader)
            shards.append({name for batch in sharded for name in batch["name"]})
        assert shards[0].isdisjoint(shards[1]), key
        assert {n.removesuffix("_leftImg8bit") for n in shards[0] | shards[1]} == {
            n.removesuffix("_leftImg8bit") for n in halves[key]
        }


# --- bad input ------------------------------------------------------------------------------


def test_missing_root_and_split_name_the_path(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        dm_(tmp_path / "nowhere").setup("fit")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert "cityscapes-dataset.com" in str(info.value)
    fine_only = tmp_path / "fine_only"
    shutil.copytree(tree / "leftImg8bit", fine_only / "leftImg8bit")
    shutil.copytree(tree / "gtFine", fine_only / "gtFine")
    with pytest.raises(FileNotFoundError, match=r"gtCoarse/train_extra' not found"):
        dm_(fine_only, train_set="coarse").setup("fit")


def _first(root: Path, folder: str, split: str = "val") -> Path:
    pattern = "*_leftImg8bit.png" if folder == "leftImg8bit" else "*_gtFine_labelIds.png"
    return sorted((root / folder / split).rglob(pattern))[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _out_of_range(path: Path) -> None:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 40  # not a Cityscapes label id
    cv2.imwrite(str(path), label)


BAD_FILES = {
    "image without label": ("gtFine", lambda p: p.unlink(), "has no label"),
    "label without image": ("leftImg8bit", lambda p: p.unlink(), "has no image"),
    "unreadable image": ("leftImg8bit", lambda p: p.write_bytes(b"not a png"), "cannot decode"),
    "truncated label": ("gtFine", _truncate, "truncated"),
    "label value out of range": ("gtFine", _out_of_range, r"values \[40\] are not labels"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_raises_naming_it(fresh: Path, case: str) -> None:
    folder, damage, message = BAD_FILES[case]
    path = _first(fresh, folder)
    damage(path)
    dm = dm_(fresh)
    with pytest.raises(InvalidSampleError, match=message) as info:
        dm.setup("validate")
        list(dm.val_dataloader())
    stem = path.name.split("_leftImg8bit")[0].split("_gtFine")[0]
    assert stem in str(info.value)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_skip_invalid_skips_and_counts(fresh: Path, case: str) -> None:
    folder, damage, _ = BAD_FILES[case]
    damage(_first(fresh, folder))
    dm = dm_(fresh, skip_invalid=True, eval_batch_size=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("validate")
        batches = list(dm.val_dataloader())
    skipped = [w for w in caught if issubclass(w.category, SkippedSamplesWarning)]
    assert len(skipped) == 1, [str(w.message) for w in caught]
    assert "skipped 1" in str(skipped[0].message)
    # nothing else changes: batches are ordinary, values are train ids or 255
    assert all(set(b) == {"image", "mask", "name"} for b in batches)
    assert all(b["image"].shape == (1, 3, 64, 128) for b in batches)
    assert len(batches) in (1, 2)  # unmatched files leave the split; unreadable ones are replaced
    assert all(set(b["mask"].unique().tolist()) <= set(range(19)) | {255} for b in batches)


def test_skip_invalid_warns_at_the_end_of_each_epoch(fresh: Path) -> None:
    _truncate(_first(fresh, "leftImg8bit", "train"))
    dm = dm_(fresh, skip_invalid=True, batch_size=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    for _ in range(2):
        with pytest.warns(SkippedSamplesWarning, match="train loader: skipped 1 invalid") as rec:
            batches = list(loader)
        assert len(rec) == 1
        assert len(batches) == 2 and all(b["image"].shape == (2, 3, 32, 32) for b in batches)


# --- predict and the official evaluation ----------------------------------------------------


def test_predict_writes_official_label_ids_at_full_size(tree: Path, tmp_path: Path) -> None:
    dm = dm_(tree, long_side=64)  # the network sees half-resolution images
    dm.setup("validate")
    truth = {b["name"][0]: b["mask"][0] for b in dm_(tree, eval_batch_size=1).val_dataloader()}
    half = {
        name: torch.nn.functional.interpolate(t[None, None].float(), size=(32, 64))[0, 0].long()
        for name, t in truth.items()
    }
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    predict(dm, OracleModel(half), writer)
    files = sorted((tmp_path / "out" / "submission").iterdir())
    assert [f.name for f in files] == ["frankfurt_000000_000019_pred.png",
                                      "frankfurt_000001_000020_pred.png"]  # fmt: skip
    for f in files:
        ids = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (64, 128) and ids.dtype == np.uint8
        back = torch.from_numpy(ID_TO_TRAIN_ID[ids])
        name = f.name.replace("_pred.png", "_leftImg8bit")
        expected = torch.nn.functional.interpolate(half[name][None, None].float(), size=(64, 128))[
            0, 0
        ].long()
        assert torch.equal(back, expected)
    overlays = sorted((tmp_path / "out" / "overlay").iterdir())
    assert len(overlays) == 2
    assert cv2.imread(str(overlays[0])).shape == (32, 64, 3)


def test_miou_agrees_with_the_official_evaluation(tmp_path: Path) -> None:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    # label ids 0..28: train ids 16-18 (train, motorcycle, bicycle) never occur in the truth
    root = make_cityscapes(tmp_path / "cs", per_city=3, ids=range(29), seed=3)
    dm = dm_(root, eval_batch_size=1)
    dm.setup("validate")
    rng = torch.Generator().manual_seed(0)
    truth, guesses = {}, {}
    for batch in dm.val_dataloader():
        mask = batch["mask"][0]
        guess = mask.clone()
        noise = torch.rand(mask.shape, generator=rng) < 0.3
        guess[noise] = torch.randint(0, 19, mask.shape, generator=rng)[noise]
        guess[mask == 255] = torch.randint(0, 19, mask.shape, generator=rng)[mask == 255]
        guess[guess == 11] = 0  # person: in the truth, never predicted -> IoU 0
        guess[guess == 17] = 0  # motorcycle: neither in the truth nor predicted -> no IoU
        guess[:4, :4] = 18  # bicycle: predicted, not in the truth -> IoU 0
        truth[batch["name"][0]], guesses[batch["name"][0]] = mask, guess
    predict(dm, OracleModel(guesses), PredictionWriter(str(tmp_path / "out"), overlay=False))

    metric = MulticlassJaccardIndex(19, ignore_index=255, average="macro")
    for name, mask in truth.items():
        written = cv2.imread(
            str(tmp_path / "out" / "submission" / f"{name.removesuffix('_leftImg8bit')}_pred.png"),
            cv2.IMREAD_UNCHANGED,
        )
        metric.update(torch.from_numpy(ID_TO_TRAIN_ID[written])[None], mask[None])
    ours = float(metric.compute())

    args = copy.copy(official.args)
    args.quiet, args.JSONOutput = True, False
    args.evalInstLevelScore = False  # nIoU only; cityscapesscripts 2.3 uses np.in1d (NumPy < 2.4)
    args.predictionPath, args.predictionWalk = str(tmp_path / "out" / "submission"), None
    gts = sorted(str(p) for p in (root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    preds = [official.getPrediction(args, gt) for gt in gts]  # the official file matching
    assert len(set(preds)) == len(gts) == 3
    result = official.evaluateImgLists(preds, gts, args)
    assert np.isnan(result["classScores"]["motorcycle"])  # absent everywhere: left out
    assert result["classScores"]["person"] == 0.0
    assert result["classScores"]["bicycle"] == 0.0
    assert ours == pytest.approx(result["averageScoreClasses"], abs=1e-4)
    assert 0.3 < ours < 0.9
