"""PredictionWriter: ids or logits in, submission files and overlays out, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch

from callbacks.prediction_writer import PredictionWriter
from lightning_nas.data import SyntheticDataModule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fake_datasets import OracleModel, predict  # noqa: E402


@pytest.fixture
def dm(synthetic_root: str) -> SyntheticDataModule:
    return SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, batch_size=4
    )


def truth(dm: SyntheticDataModule) -> dict[str, torch.Tensor]:
    dm.setup("validate")
    return {n: m for b in dm.val_dataloader() for n, m in zip(b["name"], b["mask"], strict=True)}


@pytest.mark.parametrize("logits", [False, True])
def test_writes_train_ids_from_ids_or_logits(
    dm: SyntheticDataModule, tmp_path: Path, logits: bool
) -> None:
    masks = {n: m.clamp(max=5) for n, m in truth(dm).items()}  # 255 is never predicted
    predict(dm, OracleModel(masks, logits=logits, num_classes=6), PredictionWriter(str(tmp_path)))
    files = sorted((tmp_path / "submission").iterdir())
    assert [f.stem for f in files] == sorted(masks)
    for f in files:
        written = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        assert torch.equal(torch.from_numpy(written).long(), masks[f.stem])


def test_resizes_to_the_size_on_disk_and_overlays(dm: SyntheticDataModule, tmp_path: Path) -> None:
    small = {n: torch.zeros(16, 16, dtype=torch.long) for n in truth(dm)}
    for m in small.values():
        m[:, 8:] = 1
    predict(dm, OracleModel(small), PredictionWriter(str(tmp_path), alpha=1.0))
    name = sorted(small)[0]
    written = cv2.imread(str(tmp_path / "submission" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    assert written.shape == (32, 32)  # back to the image's size (nearest neighbour)
    assert (written[:, :16] == 0).all() and (written[:, 16:] == 1).all()
    over = cv2.imread(str(tmp_path / "overlay" / f"{name}.png"))[..., ::-1]
    assert over.shape == (32, 32, 3)
    assert tuple(over[0, 0]) == dm.palette[0] and tuple(over[0, -1]) == dm.palette[1]


def test_overlay_blends_the_input_image(dm: SyntheticDataModule, tmp_path: Path) -> None:
    masks = {n: torch.zeros(32, 32, dtype=torch.long) for n in truth(dm)}
    predict(dm, OracleModel(masks), PredictionWriter(str(tmp_path), alpha=0.0))
    name = sorted(masks)[0]
    image = cv2.imread(str(Path(dm.root) / "images" / "val" / f"{name}.png"))
    over = cv2.imread(str(tmp_path / "overlay" / f"{name}.png"))
    assert np.abs(over.astype(int) - image.astype(int)).max() <= 1  # denormalised input


def test_needs_a_datamodule_and_a_tensor(dm: SyntheticDataModule, tmp_path: Path) -> None:
    dm.setup("predict")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        callbacks=[PredictionWriter(str(tmp_path))])  # fmt: skip
    with pytest.raises(ValueError, match="needs a lightning_nas SegmentationDataModule"):
        trainer.predict(OracleModel(truth(dm)), dataloaders=dm.predict_dataloader())
    with pytest.raises(ValueError, match="alpha"):
        PredictionWriter(alpha=1.5)
