"""Sliding-window and multi-scale + flip inference against direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.data.evaluation import multiscale_flip_logits, sliding_window_logits


class Recorder(torch.nn.Module):
    """A 3x3 conv (so tiles see context) that records the input sizes it is given."""

    def __init__(self, out: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, out, 3, padding=1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x)


def test_pointwise_model_is_exact_and_tiles_cover_the_image() -> None:
    conv = torch.nn.Conv2d(3, 5, 1)
    image = torch.randn(2, 3, 45, 70)
    model = Recorder()
    model.conv = conv
    out = sliding_window_logits(model, image, window=(20, 32), stride=(10, 16), num_classes=5)
    assert out.shape == (2, 5, 45, 70)
    assert torch.allclose(out, conv(image), atol=1e-5)
    assert set(model.sizes) == {(20, 32)}  # the model only ever sees the window
    # rows start at 0, 10, 20, 25 (flush with the end); columns at 0, 16, 32, 38
    assert len(model.sizes) == 4 * 4


def test_overlaps_are_averaged() -> None:
    model = Recorder()
    image = torch.randn(1, 3, 30, 30)
    out = sliding_window_logits(model, image, window=20, stride=10)
    # reference: tiles at 0 and 10 on both axes, mean of the overlapping tile outputs
    total = torch.zeros(1, 4, 30, 30)
    count = torch.zeros(1, 1, 30, 30)
    for top in (0, 10):
        for left in (0, 10):
            total[..., top : top + 20, left : left + 20] += model.conv(
                image[..., top : top + 20, left : left + 20]
            )
            count[..., top : top + 20, left : left + 20] += 1
    assert torch.allclose(out, total / count, atol=1e-6)


def test_small_images_are_padded_to_the_window() -> None:
    model = Recorder()
    image = torch.randn(1, 3, 10, 12)
    out = sliding_window_logits(model, image, window=16)
    assert model.sizes == [(16, 16)]
    padded = F.pad(image, (0, 4, 0, 6))  # zeros = the mean colour after normalisation
    assert torch.allclose(out, model.conv(padded)[..., :10, :12], atol=1e-6)


def test_low_resolution_logits_are_upsampled() -> None:
    def strided(x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 3, x.shape[2] // 4, x.shape[3] // 4)

    out = sliding_window_logits(strided, torch.randn(1, 3, 40, 40), window=32)
    assert out.shape == (1, 3, 40, 40) and torch.allclose(out, torch.ones_like(out))
    with pytest.raises(ValueError, match="expected 5"):
        sliding_window_logits(strided, torch.randn(1, 3, 8, 8), window=8, num_classes=5)


def test_multiscale_flip_matches_a_manual_average() -> None:
    model = Recorder()
    image = torch.randn(1, 3, 24, 32)
    out = multiscale_flip_logits(model, image, scales=(0.5, 1.0, 1.5), flip=True)
    expected = torch.zeros(1, 4, 24, 32)
    for scale in (0.5, 1.0, 1.5):
        size = (round(24 * scale), round(32 * scale))
        x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        for flip in (False, True):
            y = model.conv(x.flip(-1) if flip else x)
            y = y.flip(-1) if flip else y
            expected += F.interpolate(y, size=(24, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected / 6, atol=1e-5)
    probs = multiscale_flip_logits(model, image, scales=(1.0,), flip=True, softmax=True)
    assert torch.allclose(probs.sum(1), torch.ones(1, 24, 32), atol=1e-5)


def test_multiscale_with_sliding_window() -> None:
    conv = torch.nn.Conv2d(3, 2, 1)
    image = torch.randn(1, 3, 40, 40)
    plain = multiscale_flip_logits(conv, image, scales=(1.0, 2.0))
    tiled = multiscale_flip_logits(conv, image, scales=(1.0, 2.0), window=24, stride=12)
    assert torch.allclose(plain, tiled, atol=1e-5)
    with pytest.raises(ValueError, match="scales"):
        multiscale_flip_logits(conv, image, scales=())
