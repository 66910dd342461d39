"""PASCAL VOC 2012: palette labels, SBD train_aug, protocol, bad input, palette submissions."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fake_datasets import OracleModel, make_voc, predict
from PIL import Image

from callbacks.prediction_writer import PredictionWriter
from lightning_nas.data import InvalidSampleError, SkippedSamplesWarning, VOCDataModule
from lightning_nas.data.palette import bitwise_palette


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc") / "voc")


@pytest.fixture(scope="module")
def sbd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("sbd") / "voc", sbd_extra=3)


@pytest.fixture
def fresh(tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "voc"))


def dm_(root: Path, **kwargs) -> VOCDataModule:
    kwargs = {"crop_size": 32, "batch_size": 2, "num_workers": 0, "pin_memory": False, **kwargs}
    return VOCDataModule(root=str(root), **kwargs)


def voc2012(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2012"


def test_metadata_without_disk(tmp_path: Path) -> None:
    dm = VOCDataModule(root=str(tmp_path / "absent"))
    assert dm.num_classes == 21
    assert dm.class_names[0] == "background" and dm.class_names[-1] == "tvmonitor"
    assert dm.palette[:3] == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    assert (dm.crop_size, dm.scale_range, dm.eval_batch_size) == (513, (0.5, 2.0), 1)


def test_palette_labels_read_as_indices(tree: Path) -> None:
    label_path = voc2012(tree) / "SegmentationClass" / "2008_000004.png"  # first val image
    assert Image.open(label_path).mode == "P"
    assert cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED).ndim == 3  # OpenCV's colours
    dm = dm_(tree)
    dm.setup("validate")
    dataset = dm.val_dataloader().dataset
    indices = np.array(Image.open(label_path))
    assert set(np.unique(indices).tolist()) <= set(range(21)) | {255}
    assert (indices == 255).any()  # the border band
    assert torch.equal(dataset[0]["mask"], torch.from_numpy(indices.astype(np.int64)))
    assert dataset[0]["name"] == "2008_000004"


def test_splits_and_train_aug(tree: Path, sbd: Path) -> None:
    plain = dm_(tree)
    plain.setup()
    assert not plain.uses_train_aug()
    assert (len(plain.pairs("train")), len(plain.pairs("val"))) == (4, 2)
    aug = dm_(sbd)
    aug.setup("fit")
    assert aug.uses_train_aug()  # auto-detected
    assert len(aug.pairs("train")) == 4 + 3
    assert all("SegmentationClassAug" in label for _, label in aug.pairs("train"))
    assert all("/SegmentationClass/" in label for _, label in aug.pairs("val"))
    assert len(dm_(sbd, train_aug=False).pairs("train")) == 4
    with pytest.raises(FileNotFoundError, match="SegmentationClassAug.*SBD"):
        dm_(tree, train_aug=True).setup("fit")
    # the list may be DeepLab's "trainaug.txt" with "/JPEGImages/x.jpg /SegmentationClassAug/x.png"
    sets = voc2012(sbd) / "ImageSets" / "Segmentation"
    ids = (sets / "train_aug.txt").read_text().split()
    (sets / "train_aug.txt").rename(sets / "trainaug.txt")
    try:
        lines = "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids)
        (sets / "trainaug.txt").write_text(lines)
        assert [Path(p).stem for p, _ in dm_(sbd).pairs("train")] == ids
    finally:
        (sets / "trainaug.txt").rename(sets / "train_aug.txt")
        (sets / "train_aug.txt").write_text("".join(f"{i}\n" for i in ids))


def test_train_aug_sharing_val_images_is_refused(fresh: Path) -> None:
    sets = voc2012(fresh) / "ImageSets" / "Segmentation"
    (voc2012(fresh) / "SegmentationClassAug").mkdir()
    (sets / "train_aug.txt").write_text((sets / "trainval.txt").read_text())
    with pytest.raises(ValueError, match="shares 2 images with val"):
        dm_(fresh).setup("fit")


def test_root_may_be_the_devkit_folder(tree: Path) -> None:
    assert len(dm_(tree / "VOCdevkit").pairs("val")) == 2
    assert len(dm_(voc2012(tree)).pairs("val")) == 2


def test_crops_pad_with_ignore_and_eval_keeps_sizes(tree: Path) -> None:
    dm = dm_(tree, crop_size=72, scale_range=(1.0, 1.0), batch_size=4, hflip=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 72, 72)
    # every image is at most 64 high: padded at the bottom, with 0 in the normalised image
    assert (batch["mask"][:, -8:] == 255).all() and (batch["image"][:, :, -8:] == 0.0).all()
    sizes = [tuple(b["mask"].shape[-2:]) for b in dm.val_dataloader()]
    assert sizes == [(64, 48), (40, 56)]  # whole images, one by one


def test_missing_root_names_the_path_and_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        dm_(tmp_path / "voc").setup("fit")
    assert str(tmp_path / "voc") in str(info.value)
    assert "host.robots.ox.ac.uk" in str(info.value)


def test_missing_list_names_the_path(fresh: Path) -> None:
    (voc2012(fresh) / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Segmentation/val\.txt' not found"):
        dm_(fresh).setup("validate")


def _palette_png(path: Path, values: np.ndarray) -> None:
    image = Image.fromarray(values)
    image.putpalette([c for colour in bitwise_palette(256) for c in colour])
    image.save(path)


def test_bad_files_raise_naming_them(fresh: Path) -> None:
    voc = voc2012(fresh)
    label = voc / "SegmentationClass" / "2008_000004.png"  # first val image
    values = np.array(Image.open(label))
    values[0, 0] = 30  # not a VOC class
    _palette_png(label, values)
    dm = dm_(fresh)
    dm.setup("validate")
    with pytest.raises(InvalidSampleError, match=r"2008_000004\.png.*values \[30\]"):
        list(dm.val_dataloader())
    image = voc / "JPEGImages" / "2008_000005.jpg"
    image.write_bytes(image.read_bytes()[:-200])  # truncated JPEG
    with pytest.raises(InvalidSampleError, match=r"2008_000005\.jpg' is truncated"):
        dm.val_dataloader().dataset.load(1)
    (voc / "SegmentationClass" / "2008_000000.png").unlink()
    with pytest.raises(InvalidSampleError, match=r"2008_000000\.jpg' has no label"):
        dm_(fresh).setup("fit")


def test_skip_invalid_counts_bad_files(fresh: Path) -> None:
    voc = voc2012(fresh)
    (voc / "JPEGImages" / "2008_000001.jpg").write_bytes(b"\xff\xd8garbage\xff\xd9")
    (voc / "SegmentationClass" / "2008_000002.png").unlink()
    dm = dm_(fresh, skip_invalid=True, batch_size=1)
    with pytest.warns(SkippedSamplesWarning, match="skipped 1 unmatched"):
        dm.setup("fit")
    assert len(dm.pairs("train")) == 3
    with pytest.warns(SkippedSamplesWarning, match=r"skipped 1 invalid.*2008_000001\.jpg"):
        batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(b["image"].shape == (1, 3, 32, 32) for b in batches)


def test_predict_writes_palette_pngs(tree: Path, tmp_path: Path) -> None:
    dm = dm_(tree, predict_split="test")
    dm.setup("predict")
    names = [Path(p).stem for p in dm.images("test")]
    sizes = {b["name"][0]: tuple(b["size"][0].tolist()) for b in dm.predict_dataloader()}
    rng = torch.Generator().manual_seed(0)
    guesses = {n: torch.randint(0, 21, sizes[n], generator=rng) for n in names}
    predict(dm, OracleModel(guesses, logits=True, num_classes=21), PredictionWriter(str(tmp_path)))
    folder = tmp_path / "submission" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert sorted(p.stem for p in folder.iterdir()) == names
    for name in names:
        image = Image.open(folder / f"{name}.png")
        assert image.mode == "P"
        assert image.getpalette()[: 3 * 21] == [c for colour in dm.palette for c in colour]
        assert torch.equal(torch.from_numpy(np.array(image)).long(), guesses[name])
    assert sorted(p.stem for p in (tmp_path / "overlay").iterdir()) == names
