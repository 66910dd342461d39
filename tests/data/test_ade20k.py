"""ADE20K: 0 ignored and 1..150 -> 0..149, long side 513 protocol, bad input, 1..150 PNGs."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fake_datasets import OracleModel, make_ade20k, predict

from callbacks.prediction_writer import PredictionWriter
from lightning_nas.data import ADE20KDataModule, InvalidSampleError, SkippedSamplesWarning


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ade20k(tmp_path_factory.mktemp("ade") / "ade20k", num_test=2)


@pytest.fixture
def fresh(tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "ade20k"))


def dm_(root: Path, **kwargs) -> ADE20KDataModule:
    kwargs = {"crop_size": 32, "long_side": None, "batch_size": 2, "num_workers": 0,
              "pin_memory": False, **kwargs}  # fmt: skip
    return ADE20KDataModule(root=str(root), **kwargs)


def ade(root: Path) -> Path:
    return root / "ADEChallengeData2016"


def test_metadata_without_disk(tmp_path: Path) -> None:
    dm = ADE20KDataModule(root=str(tmp_path / "absent"))
    assert dm.num_classes == 150 == len(set(dm.class_names))
    assert dm.class_names[:3] == ["wall", "building", "sky"] and dm.class_names[-1] == "flag"
    assert len(set(dm.palette)) == 150
    assert (dm.long_side, dm.crop_size, dm.eval_batch_size) == (513, 513, 1)


def test_label_mapping_pixel_for_pixel(tree: Path) -> None:
    dm = dm_(tree)
    dm.setup("validate")
    dataset = dm.val_dataloader().dataset
    for i, (_, label_path) in enumerate(dataset.pairs):
        raw = cv2.imread(label_path, cv2.IMREAD_UNCHANGED).astype(np.int64)
        assert (raw == 0).any() and raw.max() <= 150
        expected = np.where(raw == 0, 255, raw - 1)
        assert torch.equal(dataset[i]["mask"], torch.from_numpy(expected))


def test_splits(tree: Path) -> None:
    dm = dm_(tree, predict_split="test")
    dm.setup()
    assert (len(dm.pairs("train")), len(dm.pairs("val")), len(dm.images("test"))) == (4, 2, 2)
    assert Path(dm.pairs("train")[0][0]).name == "ADE_train_00000001.jpg"
    assert len(dm_(ade(tree)).pairs("val")) == 2  # root may be ADEChallengeData2016 itself


def test_long_side_resize_then_crop(tree: Path) -> None:
    dm = dm_(tree, long_side=100, crop_size=(96, 112), scale_range=(1.0, 1.0), hflip=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 96, 112)
    # every image is resized to a longer side of 100: a 112-wide crop needs padding, on the
    # right (DeepLab's pad_to_bounding_box at offset 0), 0 in the normalised image
    assert (batch["mask"][..., -12:] == 255).all()
    assert (batch["image"][..., -12:] == 0.0).all()
    val = [tuple(b["mask"].shape[-2:]) for b in dm.val_dataloader()]
    assert val == [(100, 62), (100, 100)]  # 64x40 and 56x56 on disk


def test_bad_label_values_and_unmatched_files(fresh: Path) -> None:
    label = ade(fresh) / "annotations" / "validation" / "ADE_val_00000001.png"
    raw = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    raw[0, 0] = 151
    cv2.imwrite(str(label), raw)
    dm = dm_(fresh)
    dm.setup("validate")
    with pytest.raises(InvalidSampleError, match=r"ADE_val_00000001\.png.*values \[151\]"):
        dm.val_dataloader().dataset[0]
    (ade(fresh) / "images" / "training" / "ADE_train_00000002.jpg").unlink()
    with pytest.raises(InvalidSampleError, match=r"ADE_train_00000002\.png' has no image"):
        dm_(fresh).setup("fit")
    with pytest.warns(SkippedSamplesWarning, match="skipped 1 unmatched"):
        assert len(dm_(fresh, skip_invalid=True).pairs("train")) == 3


def test_predict_writes_values_1_to_150_at_size_on_disk(tree: Path, tmp_path: Path) -> None:
    dm = dm_(tree, long_side=32)
    dm.setup("predict")
    guesses = {}
    for batch in dm.predict_dataloader():
        assert batch["image"].shape[-2:] != tuple(batch["size"][0].tolist())  # resized
        guesses[batch["name"][0]] = torch.full(batch["image"].shape[-2:], 149, dtype=torch.long)
        guesses[batch["name"][0]][:4] = 0
    predict(dm, OracleModel(guesses), PredictionWriter(str(tmp_path)))
    for name in guesses:
        written = cv2.imread(str(tmp_path / "submission" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(ade(tree) / "images" / "validation" / f"{name}.jpg"))
        assert written.shape == image.shape[:2]
        assert set(np.unique(written).tolist()) == {1, 150}
