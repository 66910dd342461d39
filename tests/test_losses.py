"""OhemCrossEntropy: CE averaged over the hard pixels, never fewer than min_kept of them."""

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.errors import ConfigError
from lightning_nas.losses import OhemCrossEntropy


def _data(seed=0, n=2, k=4, size=8):
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, k, size, size, generator=gen)
    mask = torch.randint(0, k, (n, size, size), generator=gen)
    mask[0, :2] = 255
    return logits, mask


def test_mean_over_pixels_below_the_threshold() -> None:
    logits, mask = _data()
    loss = OhemCrossEntropy(thresh=0.7, min_kept_fraction=0.0)(logits, mask)
    pixel = F.cross_entropy(logits, mask, ignore_index=255, reduction="none")
    valid = mask != 255
    prob = torch.exp(-pixel)
    hard = valid & (prob <= 0.7)
    assert 0 < hard.sum() < valid.sum()
    assert float(loss) == pytest.approx(float(pixel[hard].mean()), rel=1e-6)


def test_min_kept_keeps_the_hardest_pixels() -> None:
    logits, mask = _data(1)
    valid = mask != 255
    pixel = F.cross_entropy(logits, mask, ignore_index=255, reduction="none")[valid]
    n_valid = int(valid.sum())
    # threshold 0.01 keeps almost nothing: the 1/2 hardest pixels count instead
    loss = OhemCrossEntropy(thresh=0.01, min_kept_fraction=0.5)(logits, mask)
    hardest = pixel.sort(descending=True).values[: int(n_valid * 0.5)]
    assert float(loss) == pytest.approx(float(hardest.mean()), rel=1e-6)
    # threshold 1 keeps everything: plain CE
    full = OhemCrossEntropy(thresh=1.0)(logits, mask)
    assert float(full) == pytest.approx(float(F.cross_entropy(logits, mask, ignore_index=255)))


def test_all_ignored_is_zero_with_a_graph_and_bad_arguments() -> None:
    logits, mask = _data()
    logits.requires_grad_(True)
    loss = OhemCrossEntropy()(logits, torch.full_like(mask, 255))
    loss.backward()
    assert float(loss) == 0.0 and logits.grad is not None
    with pytest.raises(ConfigError, match="thresh"):
        OhemCrossEntropy(thresh=0.0)
    with pytest.raises(ConfigError, match="min_kept_fraction"):
        OhemCrossEntropy(min_kept_fraction=2.0)


def test_no_hard_pixel_and_min_kept_zero_is_plain_ce_not_nan() -> None:
    logits = torch.tensor([[[[6.0, 6.0, 6.0]], [[0.0, 0.0, 0.0]]]])  # 3 easy pixels
    mask = torch.zeros(1, 1, 3, dtype=torch.long)
    for fraction in (0.0, 1 / 16):  # int(3 / 16) == 0
        loss = OhemCrossEntropy(thresh=0.7, min_kept_fraction=fraction)(logits, mask)
        assert torch.isfinite(loss)
        assert float(loss) == pytest.approx(float(F.cross_entropy(logits, mask)))
