"""Training augmentation: discrete scales (FasterSeg) and padding after normalisation.

Oracles are hand-computed: the sizes FasterSeg's ``random_scale`` gives (``int(h * s)``), the
normalisation ``(x / 255 - mean) / std`` written out here, and the DeepLab pad position.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.data import (
    ADE20KDataModule,
    CityscapesDataModule,
    SyntheticDataModule,
    VOCDataModule,
    seed_transform,
    train_transform,
)
from lightning_nas.errors import ConfigError

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
FASTERSEG_SCALES = [0.75, 1, 1.25]  # train_scale_array of search/ and train/config_*.py
DRAWS = 3000


def _within_4_sigma(counts: Counter, draws: int, outcomes: int) -> bool:
    p = 1 / outcomes
    sigma = (draws * p * (1 - p)) ** 0.5
    return all(abs(c - draws * p) < 4 * sigma for c in counts.values())


def test_discrete_scales_give_only_the_listed_sizes_equally_often() -> None:
    image = np.zeros((40, 64, 3), np.uint8)
    mask = np.zeros((40, 64), np.uint8)
    t = train_transform(crop_size=None, scales=FASTERSEG_SCALES, hflip=False)
    seed_transform(t, 0)
    sizes = Counter()
    for _ in range(DRAWS):
        out = t(image=image, mask=mask)
        assert tuple(out["image"].shape[1:]) == tuple(out["mask"].shape)
        sizes[tuple(out["mask"].shape)] += 1
    # int(40 * s), int(64 * s) for s = 0.75, 1, 1.25: both sides by the same factor.
    assert set(sizes) == {(30, 48), (40, 64), (50, 80)}
    assert _within_4_sigma(sizes, DRAWS, 3), sizes


def test_discrete_scale_interpolation_follows_the_release() -> None:
    # FasterSeg's random_scale: cv2 bilinear for the image, nearest for the label.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (8, 8), dtype=np.uint8)
    t = train_transform(crop_size=None, scales=[1.25], hflip=False, mean=(0, 0, 0), std=(1, 1, 1))
    out = t(image=image, mask=mask)
    assert set(np.unique(out["mask"].numpy())) <= {0, 1, 2}  # no blended label values
    # Nearest neighbour 8 -> 10: source index floor(i * 8 / 10).
    src = (np.arange(10) * 8) // 10
    np.testing.assert_array_equal(out["mask"].numpy(), mask[np.ix_(src, src)])
    # Bilinear with half-pixel centres: output pixel (0, 1) samples source x = 1.5 * 0.8 - 0.5
    # = 0.7 (and y = 0.5 * 0.8 - 0.5 < 0, clamped to row 0).
    expected = 0.3 * image[0, 0].astype(float) + 0.7 * image[0, 1]
    np.testing.assert_allclose(out["image"][:, 0, 1].numpy() * 255, expected, atol=1.0)


def test_scales_of_one_only_is_the_identity() -> None:
    image = np.full((10, 12, 3), 7, np.uint8)
    out = train_transform(crop_size=None, scales=[1.0], hflip=False)(image=image)
    assert tuple(out["image"].shape) == (3, 10, 12)


def test_small_image_is_padded_with_zero_after_normalisation() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    mask = np.ones((30, 20), np.uint8)
    t = train_transform(crop_size=(48, 40), scale_range=(1.0, 1.0), hflip=False)
    out = t(image=image, mask=mask)
    x, m = out["image"].numpy(), out["mask"].numpy()
    assert x.shape == (3, 48, 40) and m.shape == (48, 40)
    # The image keeps its top-left corner (DeepLab's pad_to_bounding_box at offset 0).
    reference = ((image / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(x[:, :30, :20], reference, atol=1e-5)
    assert (m[:30, :20] == 1).all()
    # The pad (bottom rows, right columns) is exactly 0 = the mean colour after normalisation.
    assert (x[:, 30:, :] == 0.0).all() and (x[:, :, 20:] == 0.0).all()
    assert (m[30:, :] == 255).all() and (m[:, 20:] == 255).all()


def test_pad_only_where_needed_and_crop_elsewhere() -> None:
    # 60 rows > 48: a random 48-row window; 20 columns < 40: all kept, padded on the right.
    image = np.repeat(np.arange(60, dtype=np.uint8)[:, None, None] * 4, 20, 1).repeat(3, 2)
    t = train_transform(
        crop_size=(48, 40), scale_range=(1.0, 1.0), hflip=False, mean=(0, 0, 0), std=(1, 1, 1)
    )
    seed_transform(t, 0)
    tops = set()
    for _ in range(50):
        x = t(image=image)["image"].numpy()[0]
        top = round(x[0, 0] * 255) // 4
        rows = np.arange(top, top + 48)[:, None] * 4.0
        np.testing.assert_allclose(x[:, :20] * 255, np.broadcast_to(rows, (48, 20)), atol=1e-3)
        assert (x[:, 20:] == 0.0).all()
        tops.add(top)
    assert len(tops) > 5 and min(tops) >= 0 and max(tops) <= 12


def test_scale_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"scale_range and scales .*mutually exclusive"):
        train_transform(crop_size=8, scale_range=(0.5, 2.0), scales=[1.0])
    for bad in ([], [0.0, 1.0], [-1.0]):
        with pytest.raises(ConfigError, match=r"scales must be a non-empty list of positive"):
            train_transform(crop_size=8, scales=bad)
    for bad_range in ((2.0, 1.0), (0.5, float("inf"))):
        with pytest.raises(ConfigError, match=r"scale_range must be \[low, high\]"):
            train_transform(crop_size=8, scale_range=bad_range)


# --- the DataModules ----------------------------------------------------------------------


def _datamodule(cls: type, root: Path, **kwargs):
    extra = {} if cls is SyntheticDataModule else {"long_side": None}
    return cls(root=str(root), crop_size=128, hflip=False, **extra, **kwargs)


ALL = [CityscapesDataModule, VOCDataModule, ADE20KDataModule, SyntheticDataModule]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_datamodules_pass_scales_to_the_pipeline(cls: type, tmp_path: Path) -> None:
    dm = _datamodule(cls, tmp_path, scales=FASTERSEG_SCALES)
    assert dm.scales == (0.75, 1.0, 1.25) and dm.scale_range is None
    t = dm.train_transform()
    seed_transform(t, 0)
    # A 64x64 labelled square scaled by s and padded into the 128 crop: (int(64 s))^2 labels.
    areas = Counter(
        int(
            (
                t(image=np.zeros((64, 64, 3), np.uint8), mask=np.ones((64, 64), np.uint8))["mask"]
                == 1
            ).sum()
        )
        for _ in range(600)
    )
    assert set(areas) == {48 * 48, 64 * 64, 80 * 80}
    assert _within_4_sigma(areas, 600, 3), areas


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_datamodules_reject_both_scale_options(cls: type, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"scale_range=\[0.5, 2.0\] and scales=\[1.0\]"):
        _datamodule(cls, tmp_path, scale_range=(0.5, 2.0), scales=[1.0])
    with pytest.raises(ConfigError, match=r"scales must be .* got \[\]"):
        _datamodule(cls, tmp_path, scales=[])


@pytest.mark.parametrize(
    ("cls", "default"),
    [
        (CityscapesDataModule, (0.5, 2.0)),
        (VOCDataModule, (0.5, 2.0)),
        (ADE20KDataModule, (0.5, 2.0)),
        (SyntheticDataModule, (1.0, 1.0)),
    ],
    ids=["cityscapes", "voc", "ade20k", "synthetic"],
)
def test_default_scale_range(cls: type, default: tuple[float, float], tmp_path: Path) -> None:
    dm = cls(root=str(tmp_path))
    assert dm.scale_range == default and dm.scales is None
