"""The dataset base: reading, label mapping, errors, transforms, splits and loaders."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from lightning_nas.data import (
    ADE20KDataModule,
    CityscapesDataModule,
    InvalidSampleError,
    LabelLUT,
    SegmentationDataModule,
    SegmentationDataset,
    SyntheticDataModule,
    VOCDataModule,
    match_pairs,
    seed_transform,
    split_indices,
    train_transform,
)
from lightning_nas.errors import ConfigError

# Raw label values 10 / 20 / 30 are classes 0 / 1 / 2; everything else is ignored.
_LUT = np.full(256, 255, np.uint8)
_LUT[[10, 20, 30]] = [0, 1, 2]


class TinyDataModule(SegmentationDataModule):
    """A minimal dataset in a Cityscapes-like layout: ``<root>/img/<split>/<city>/*_img.png``.

    No ``__init__``: every argument is the base's; no ``default_root``, so ``root`` is required.
    """

    CLASS_NAMES = ("a", "b", "c")
    PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    label_lut = _LUT
    source = "Make it with write_tiny()."
    default_scale_range = (1.0, 1.0)

    def list_pairs(self, split: str) -> list[tuple[Path, Path]]:
        root = Path(self.root)
        return match_pairs(
            self.require_dir(root / "img" / split),
            root / "lbl" / split,
            image_suffix="_img.png",
            label_suffix="_lbl.png",
        )


def write_tiny(root: Path, num: int = 5, size: tuple[int, int] = (24, 32)) -> None:
    """Write ``num`` random images per split with raw labels in {10, 20, 30, 99}."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(num):
            (root / "img" / split / "city").mkdir(parents=True, exist_ok=True)
            (root / "lbl" / split / "city").mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            label = rng.choice(np.array([10, 20, 30, 99], np.uint8), size)
            cv2.imwrite(str(root / "img" / split / "city" / f"{split}{i}_img.png"), image)
            cv2.imwrite(str(root / "lbl" / split / "city" / f"{split}{i}_lbl.png"), label)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    write_tiny(tmp_path)
    return tmp_path


def test_metadata_before_setup(tmp_path: Path) -> None:
    dm = TinyDataModule(root=str(tmp_path / "nowhere"))
    assert dm.num_classes == 3
    assert dm.class_names == ["a", "b", "c"]
    assert dm.palette[1] == (0, 255, 0)
    assert dm.ignore_index == 255
    assert dm.hparams["root"] == str(tmp_path / "nowhere")


def test_missing_root_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    dm = TinyDataModule(root=str(missing))
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert str(missing) in message
    assert "write_tiny" in message
    assert "\n" not in message


def test_missing_split_names_the_path(tiny: Path) -> None:
    (tiny / "img" / "val").rename(tiny / "img" / "elsewhere")
    with pytest.raises(FileNotFoundError, match=str(tiny / "img" / "val")):
        TinyDataModule(root=str(tiny)).setup("validate")


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"num_workers": -1}, {"scale_range": (2.0, 1.0)}]
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must"):
        TinyDataModule(root=str(tmp_path), **kwargs)


def test_match_pairs_mirrors_folders(tiny: Path) -> None:
    pairs = match_pairs(tiny / "img" / "train", tiny / "lbl" / "train", "_img.png", "_lbl.png")
    assert len(pairs) == 5
    assert pairs[0] == (
        tiny / "img" / "train" / "city" / "train0_img.png",
        tiny / "lbl" / "train" / "city" / "train0_lbl.png",
    )
    with pytest.raises(FileNotFoundError, match=r"no '\*\.jpg' images"):
        match_pairs(tiny / "img" / "train", tiny / "lbl" / "train", ".jpg")


def test_dataset_item_types_and_label_mapping(tiny: Path) -> None:
    dm = TinyDataModule(root=str(tiny))
    dm.setup("validate")
    item = dm.val_dataloader().dataset[0]
    assert set(item) == {"image", "mask", "name"}
    assert item["name"] == "val0_img"
    assert item["image"].dtype == torch.float32
    assert item["image"].shape == (3, 24, 32)
    assert item["mask"].dtype == torch.int64
    assert item["mask"].shape == (24, 32)
    raw = cv2.imread(str(tiny / "lbl" / "val" / "city" / "val0_lbl.png"), cv2.IMREAD_UNCHANGED)
    assert torch.equal(item["mask"], torch.from_numpy(_LUT[raw]).long())
    assert set(item["mask"].unique().tolist()) == {0, 1, 2, 255}
    # Normalised with the ImageNet statistics, RGB order.
    bgr = cv2.imread(str(tiny / "img" / "val" / "city" / "val0_img.png"))
    red = (bgr[..., 2] / 255.0 - 0.485) / 0.229
    assert torch.allclose(item["image"][0], torch.from_numpy(red).float(), atol=1e-5)


def test_unlabelled_pairs_have_no_mask(tiny: Path) -> None:
    image = tiny / "img" / "val" / "city" / "val0_img.png"
    item = SegmentationDataset([(image, None)])[0]
    assert set(item) == {"image", "name"}
    assert item["image"].shape == (3, 24, 32)
    assert float(item["image"].min()) >= 0.0
    assert float(item["image"].max()) <= 1.0


def test_unreadable_files_are_named(tiny: Path) -> None:
    image = tiny / "img" / "val" / "city" / "val0_img.png"
    label = tiny / "lbl" / "val" / "city" / "val0_lbl.png"
    broken = tiny / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InvalidSampleError, match=r"broken\.png"):
        SegmentationDataset([(broken, label)])[0]
    with pytest.raises(InvalidSampleError, match=r"missing\.png' \(no such file\)"):
        SegmentationDataset([(image, tiny / "missing.png")])[0]
    small = tiny / "small.png"
    cv2.imwrite(str(small), np.zeros((5, 5), np.uint8))
    with pytest.raises(InvalidSampleError, match=r"small\.png"):
        SegmentationDataset([(image, small)])[0]
    colour = tiny / "colour.png"
    cv2.imwrite(str(colour), np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(InvalidSampleError, match="one channel"):
        SegmentationDataset([(image, colour)])[0]
    with pytest.raises(InvalidSampleError, match="cannot map"):
        SegmentationDataset([(image, label)], label_mapping=LabelLUT([0, 1]))[0]


def test_crop_larger_than_image_pads_mask_with_ignore(tiny: Path) -> None:
    dm = TinyDataModule(root=str(tiny), crop_size=(40, 48), batch_size=5)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 40, 48)
    assert batch["mask"].shape == (5, 40, 48)
    # The 24x32 image keeps its top-left corner (DeepLab pads bottom / right); a flip moves the
    # column pad to the left. Padded image pixels are 0 after normalisation (the mean colour).
    mask, image = batch["mask"], batch["image"]
    assert (mask[:, 24:] == 255).all()
    assert (image[:, :, 24:] == 0.0).all()
    for m, x in zip(mask, image, strict=True):
        pad = slice(32, None) if (m[:24, 32:] == 255).all() else slice(None, 16)
        assert (m[:24, pad] == 255).all()
        assert (x[:, :24, pad] == 0.0).all()
    assert set(mask[:, :24, 16:32].unique().tolist()) == {0, 1, 2, 255}


def test_train_transform_scales_and_crops() -> None:
    image = np.full((64, 64, 3), 128, np.uint8)
    mask = np.ones((64, 64), np.uint8)
    t = train_transform(crop_size=(48, 40), scale_range=(0.5, 0.5), hflip=True, ignore_index=7)
    out = t(image=image, mask=mask)
    assert out["image"].shape == (3, 48, 40)
    # Scaled to 32x32 then padded: the mask pad uses the ignore index.
    assert set(np.unique(out["mask"].numpy()).tolist()) == {1, 7}
    assert int((out["mask"] == 1).sum()) == 32 * 32
    with pytest.raises(ValueError, match="crop size must be positive"):
        train_transform(crop_size=0)


def test_seed_transform_reproduces_and_decorrelates_steps() -> None:
    image = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    t = train_transform(crop_size=16, scale_range=(1.0, 1.0))
    outs = []
    for _ in range(2):
        seed_transform(t, 5)
        outs.append(t(image=image)["image"])
    assert torch.equal(outs[0], outs[1])
    # With one shared stream, flip decision and crop offset are independent draws; albumentations'
    # own set_random_seed gives both steps the same stream and ties them together.
    t = A.Compose([A.RandomCrop(32, 32), A.HorizontalFlip()], strict=True, save_applied_params=True)
    tops: dict[bool, list[int]] = {True: [], False: []}
    for seed in range(300):
        seed_transform(t, seed)
        applied = dict(t(image=image)["applied_transforms"])
        tops["HorizontalFlip" in applied].append(applied["RandomCrop"]["crop_coords"][1])
    assert abs(np.mean(tops[True]) - np.mean(tops[False])) < 4  # tied streams: about 16 apart


def test_ranks_augment_differently(tiny: Path) -> None:
    pairs = TinyDataModule(root=str(tiny)).list_pairs("train")[:1]
    transform = train_transform(crop_size=12, scale_range=(0.5, 2.0))
    items = []
    for rank in (0, 0, 1):
        torch.manual_seed(3)  # every DDP rank is reseeded alike
        items.append(SegmentationDataset(pairs, transform, seed_from_torch=True, rank=rank)[0])
    assert torch.equal(items[0]["image"], items[1]["image"])
    assert not torch.equal(items[0]["image"], items[2]["image"])


def test_split_indices() -> None:
    first, second = split_indices(11, seed=3)
    assert len(first) == 6
    assert len(second) == 5
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == set(range(11))
    assert split_indices(11, seed=3) == (first, second)
    assert split_indices(11, seed=4) != (first, second)
    with pytest.raises(ValueError, match="at least 2"):
        split_indices(1, seed=0)


def test_search_mode_returns_halves(tiny: Path) -> None:
    dm = TinyDataModule(root=str(tiny), search=True)
    dm.setup("fit")
    loaders = dm.train_dataloader()
    assert set(loaders) == {"weights", "arch"}
    weights, arch = (set(loaders[k].dataset.pairs) for k in ("weights", "arch"))
    assert weights.isdisjoint(arch)
    assert weights | arch == set(dm.pairs("train"))


def test_eval_loader_is_deterministic_and_leaves_the_rng_alone(tiny: Path) -> None:
    dm = TinyDataModule(root=str(tiny), crop_size=16, batch_size=2)
    dm.setup("validate")
    dataset = dm.val_dataloader().dataset
    state = torch.get_rng_state()
    _ = [dataset[i] for i in range(len(dataset))]  # a deterministic pipeline draws no seed
    assert torch.equal(torch.get_rng_state(), state)
    first = [b["image"] for b in dm.val_dataloader()]
    assert first[0].shape == (2, 3, 24, 32)  # full images, no crop
    assert next(b["name"] for b in dm.val_dataloader()) == ["val0_img", "val1_img"]
    assert all(torch.equal(a, b["image"]) for a, b in zip(first, dm.val_dataloader(), strict=True))


# --- defaults: declared once in the base, per dataset as class attributes -------------------

# What each DataModule built with no argument resolves to: the defaults each one declared in its
# own __init__ signature before the arguments moved to the base (commit e3c4bd7).
OLD_DEFAULTS = {
    CityscapesDataModule: {
        False: dict(root="data/cityscapes", num_workers=4, pin_memory=True, crop_size=769,
                    long_side=None, eval_batch_size=8, scale_range=(0.5, 2.0)),
        True: dict(root="data/cityscapes", num_workers=4, pin_memory=True, crop_size=321,
                   long_side=1024, eval_batch_size=8, scale_range=(0.5, 2.0)),
    },
    VOCDataModule: {
        mode: dict(root="data/voc", num_workers=4, pin_memory=True, crop_size=513,
                   long_side=None, eval_batch_size=1, scale_range=(0.5, 2.0))
        for mode in (False, True)
    },
    ADE20KDataModule: {
        mode: dict(root="data/ade20k", num_workers=4, pin_memory=True, crop_size=513,
                   long_side=513, eval_batch_size=1, scale_range=(0.5, 2.0))
        for mode in (False, True)
    },
    SyntheticDataModule: {
        mode: dict(root="data/synthetic", num_workers=0, pin_memory=False, crop_size=64,
                   long_side=None, eval_batch_size=8, scale_range=(1.0, 1.0))
        for mode in (False, True)
    },
}  # fmt: skip
COMMON = dict(batch_size=8, persistent_workers=False, search_split_seed=0, scales=None,
              hflip=True, skip_invalid=False, predict_split=None)  # fmt: skip


@pytest.mark.parametrize("search", [False, True], ids=["retrain", "search"])
@pytest.mark.parametrize("cls", list(OLD_DEFAULTS), ids=lambda c: c.__name__)
def test_defaults_per_dataset_are_unchanged(cls: type, search: bool) -> None:
    dm = cls(search=search)
    for key, value in {**OLD_DEFAULTS[cls][search], **COMMON}.items():
        assert getattr(dm, key) == value, key
    assert dm.search is search
    # explicit values win over every default, and null keeps its own meaning
    explicit = cls(root="x", num_workers=1, pin_memory=False, crop_size=99, long_side=77,
                   eval_batch_size=3, search=search)  # fmt: skip
    values = (explicit.root, explicit.num_workers, explicit.pin_memory, explicit.crop_size)
    assert values == ("x", 1, False, 99)
    assert (explicit.long_side, explicit.eval_batch_size) == (77, 3)
    nulls = cls(crop_size=None, long_side=None, eval_batch_size=None, batch_size=5)
    assert nulls.crop_size == (64 if cls is SyntheticDataModule else None)  # synthetic: the scene
    assert (nulls.long_side, nulls.eval_batch_size) == (None, 5)


def test_subclasses_declare_only_their_own_arguments() -> None:
    import inspect

    shared = set(inspect.signature(SegmentationDataModule.__init__).parameters) - {"self"}
    for cls, own in [
        (CityscapesDataModule, {"train_set"}),
        (VOCDataModule, {"train_aug"}),
        (ADE20KDataModule, set()),
        (SyntheticDataModule, {"num_train", "num_val", "image_size", "seed"}),
        (TinyDataModule, set()),
    ]:
        if not own:  # no __init__ of its own
            assert cls.__init__ is SegmentationDataModule.__init__, cls.__name__
            continue
        params = inspect.signature(cls.__init__).parameters
        assert set(params) - {"self", "kwargs"} == own, cls.__name__
        assert not own & shared
    with pytest.raises(TypeError, match="crop"):
        CityscapesDataModule(crop=5)  # a misspelt shared argument still fails
    for cls in (CityscapesDataModule, VOCDataModule, SyntheticDataModule):
        with pytest.raises(TypeError, match="positional"):  # own arguments are keyword-only
            cls("data/x")


def test_root_is_required_without_default_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TinyDataModule: root is required"):
        TinyDataModule()
    assert TinyDataModule(root=str(tmp_path)).crop_size is None  # auto_crop_size: no crop
