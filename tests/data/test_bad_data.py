"""Bad input, for every dataset, on the generated trees: one-line errors naming the file, or skip.

Each case damages the first val pair of a fresh copy of a tiny tree in the dataset's real layout
(``fake_datasets.py``; the synthetic one is rendered) and checks (a) the error without
``skip_invalid``: its type, when it is raised (``setup`` or loading), that it is one line and
names the file and what was expected; (b) with ``skip_invalid: true``: one
``SkippedSamplesWarning`` counting and naming it, at ``setup`` or at the end of the epoch. The
table in docs/data.md ("Bad input") lists the same cases.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_datasets import make_ade20k, make_cityscapes, make_voc
from PIL import Image

from lightning_nas.data import (
    ADE20KDataModule,
    CityscapesDataModule,
    InvalidSampleError,
    SegmentationDataModule,
    SkippedSamplesWarning,
    SyntheticDataModule,
    VOCDataModule,
)
from lightning_nas.data.palette import bitwise_palette


@dataclass(frozen=True)
class Dataset:
    make: Callable[[Path], object]
    datamodule: Callable[..., SegmentationDataModule]
    bad_value: int  # a raw label value outside the dataset's mapping
    valid: str  # how the error lists the valid values
    palette: bool = False  # labels are palette PNGs (VOC)
    #: Relative paths: the folder (or list file) of the val split that goes missing, and what
    #: is emptied for an empty val split (a folder's contents, or a list file's lines).
    missing: str = ""
    empty: str = ""


def _synthetic(root: Path) -> None:
    _synthetic_dm(root).prepare_data()


def _synthetic_dm(root: Path, **kwargs: object) -> SyntheticDataModule:
    return SyntheticDataModule(root=str(root), num_train=4, num_val=2, image_size=32, **kwargs)


DATASETS = {
    "synthetic": Dataset(
        _synthetic, _synthetic_dm, 7, "0..5, 255", missing="labels/val", empty="images/val"
    ),
    "cityscapes": Dataset(
        make_cityscapes,
        lambda root, **kw: CityscapesDataModule(root=str(root), **kw),
        40,
        "0..33",
        missing="gtFine/val",
        empty="leftImg8bit/val",
    ),
    "voc": Dataset(
        make_voc,
        lambda root, **kw: VOCDataModule(root=str(root), **kw),
        30,
        "0..20, 255",
        palette=True,
        missing="VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt",
        empty="VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt",
    ),
    "ade20k": Dataset(
        make_ade20k,
        lambda root, **kw: ADE20KDataModule(root=str(root), long_side=None, **kw),
        151,
        "0..150",
        missing="ADEChallengeData2016/annotations/validation",
        empty="ADEChallengeData2016/images/validation",
    ),
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    roots = {}
    for name, dataset in DATASETS.items():
        roots[name] = tmp_path_factory.mktemp(name)
        dataset.make(roots[name])
    return roots


@dataclass
class Fresh:
    """A fresh copy of one dataset's tree, and its first val pair."""

    dataset: Dataset
    root: Path
    image: Path
    label: Path

    def datamodule(self, **kwargs: object) -> SegmentationDataModule:
        kwargs = {"num_workers": 0, "pin_memory": False, "eval_batch_size": 1, **kwargs}
        return self.dataset.datamodule(self.root, **kwargs)

    def read_label(self) -> np.ndarray:
        if self.dataset.palette:
            return np.array(Image.open(self.label))
        return cv2.imread(str(self.label), cv2.IMREAD_UNCHANGED)

    def write_label(self, values: np.ndarray) -> None:
        if not self.dataset.palette:
            cv2.imwrite(str(self.label), values)
            return
        png = Image.fromarray(values)
        if values.ndim == 2:
            png.putpalette([c for colour in bitwise_palette(256) for c in colour])
        png.save(self.label)


@pytest.fixture(params=list(DATASETS))
def fresh(request: pytest.FixtureRequest, trees: dict[str, Path], tmp_path: Path) -> Fresh:
    root = tmp_path / "root"
    shutil.copytree(trees[request.param], root)
    dataset = DATASETS[request.param]
    image, label = dataset.datamodule(root).pairs("val")[0]
    return Fresh(dataset, root, Path(image), Path(label))


# --- damage -> (when it is found, what the error says) ---------------------------------------


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _label_value(f: Fresh) -> None:
    label = f.read_label()
    label[0, 0] = f.dataset.bad_value
    f.write_label(label)


def _size(f: Fresh) -> None:
    f.write_label(f.read_label()[: f.read_label().shape[0] // 2])


def _channels(f: Fresh) -> None:
    f.write_label(np.dstack([f.read_label()] * 3))


def _expect_size(f: Fresh) -> str:
    h, w = cv2.imread(str(f.image)).shape[:2]
    return (
        f"label '{f.label}' is {h // 2}x{w} but its image '{f.image}' is {h}x{w} "
        "(height x width); expected the same size"
    )


def _expect_channels(f: Fresh) -> str:
    if f.dataset.palette:
        return f"label '{f.label}' has mode RGB (3 channels); expected palette (P) or grey (L)"
    return f"label '{f.label}' has 3 channels; expected one channel of label ids"


def _expect_truncated(f: Fresh) -> str:
    kind = "JPEG without its end marker" if f.image.suffix == ".jpg" else "PNG without its IEND"
    return f"image '{f.image}' is truncated ({kind}"


# case: (damage, "setup" | "load", expected text)
CASES: dict[str, tuple[Callable[[Fresh], None], str, Callable[[Fresh], str]]] = {
    "truncated image": (lambda f: _cut(f.image), "load", _expect_truncated),
    "empty image file": (
        lambda f: f.image.write_bytes(b""),
        "load",
        lambda f: f"image '{f.image}' is empty (0 bytes)",
    ),
    "corrupt image": (
        lambda f: f.image.write_bytes(b"not an image at all"),
        "load",
        lambda f: f"cannot decode image '{f.image}' (corrupt or not an image)",
    ),
    "truncated label": (
        lambda f: _cut(f.label),
        "load",
        lambda f: f"label '{f.label}' is truncated (PNG without its IEND chunk)",
    ),
    "corrupt label": (
        lambda f: f.label.write_bytes(b"not an image at all"),
        "load",
        lambda f: f"cannot decode label '{f.label}' (corrupt or not an image)",
    ),
    "label id outside the mapping": (
        _label_value,
        "load",
        lambda f: (
            f"cannot map label values of '{f.label}': values [{f.dataset.bad_value}] are "
            f"not labels of this dataset (valid: {f.dataset.valid})"
        ),
    ),
    "image / label size mismatch": (_size, "load", _expect_size),
    "label with 3 channels": (_channels, "load", _expect_channels),
    "image without label": (
        lambda f: f.label.unlink(),
        "setup",
        lambda f: f"image '{f.image}' has no label (expected '{f.label}')",
    ),
    "label without image": (
        lambda f: f.image.unlink(),
        "setup",
        lambda f: f"label '{f.label}' has no image (expected '{f.image}')",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_sample_raises_one_line_naming_the_file(fresh: Fresh, case: str) -> None:
    damage, when, expected = CASES[case]
    damage(fresh)
    dm = fresh.datamodule()
    with pytest.raises(InvalidSampleError) as info:
        dm.setup("validate")
        assert when == "load", "not found at setup"
        list(dm.val_dataloader())
    message = str(info.value)
    assert expected(fresh) in message
    assert "\n" not in message
    if when == "setup":
        assert message.startswith(f"{type(dm).__name__} split 'val': ")
        assert message.endswith("; fix the file or set skip_invalid: true")


@pytest.mark.parametrize("case", list(CASES))
def test_skip_invalid_counts_and_reports(fresh: Fresh, case: str) -> None:
    damage, when, expected = CASES[case]
    damage(fresh)
    dm = fresh.datamodule(skip_invalid=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("validate")
        at_setup = len(caught)
        batches = list(dm.val_dataloader())
    skipped = [str(w.message) for w in caught if issubclass(w.category, SkippedSamplesWarning)]
    assert len(skipped) == 1, skipped
    if when == "setup":
        assert at_setup == 1
        assert f"split 'val': skipped 1 unmatched file(s): {expected(fresh)}" in skipped[0]
        assert len(batches) == 1  # left out of the split
    else:
        assert at_setup == 0
        head = "val loader: skipped 1 invalid sample(s) this epoch (skip_invalid: true): "
        assert head in skipped[0]
        assert expected(fresh) in skipped[0]
        assert len(batches) == 2  # replaced by the next valid sample
    assert all(set(b) == {"image", "mask", "name"} for b in batches)


@pytest.mark.parametrize("skip_invalid", [False, True], ids=["raise", "skip"])
@pytest.mark.parametrize("case", ["missing", "empty"])
def test_missing_or_empty_split_is_fatal_at_setup(
    fresh: Fresh, case: str, skip_invalid: bool
) -> None:
    target = fresh.root / (fresh.dataset.missing if case == "missing" else fresh.dataset.empty)
    if case == "missing":
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    elif target.is_dir():
        for entry in target.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    else:
        target.write_text("")
    with pytest.raises(FileNotFoundError) as info:
        fresh.datamodule(skip_invalid=skip_invalid).setup("validate")
    message = str(info.value)
    assert f"'{target}'" in message and "\n" not in message
    if case == "missing":
        kind = "list" if target.suffix == ".txt" else "directory"
        assert f"expected {kind} '{target}' not found." in message
    elif target.suffix == ".txt":
        assert f"list '{target}' is empty; expected one image id per line" in message
    else:
        assert f"images under '{target}'" in message and message.startswith("no '*")


@pytest.mark.parametrize("mode", ["grey", "rgba"])
def test_images_of_any_channel_count_are_read_as_rgb(fresh: Fresh, mode: str) -> None:
    rgb = cv2.imread(str(fresh.image))
    other = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY if mode == "grey" else cv2.COLOR_BGR2BGRA)
    cv2.imwrite(str(fresh.image), other)
    dm = fresh.datamodule()
    dm.setup("validate")
    item = dm.val_dataloader().dataset[0]
    assert item["image"].shape == (3, *rgb.shape[:2])


def test_worker_errors_keep_their_one_line_message(trees: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(trees["synthetic"], root)
    image = root / "images" / "val" / "val_00000.png"
    image.write_bytes(b"")
    dm = _synthetic_dm(root, num_workers=1, eval_batch_size=1)
    dm.setup("validate")
    with pytest.raises(InvalidSampleError) as info:
        list(dm.val_dataloader())
    assert str(info.value) == f"image '{image}' is empty (0 bytes)"
    assert "DataLoader worker" in str(info.value.__cause__)  # the worker's traceback, chained
