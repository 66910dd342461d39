"""OhemCrossEntropy: CE averaged over the hard pixels, never fewer than min_kept of them."""

import math

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
    loss = OhemCrossEntropy(thresh=0.7, min_kept_fraction=1 / 16)(logits, mask)
    pixel = F.cross_entropy(logits, mask, ignore_index=255, reduction="none")
    valid = mask != 255
    prob = torch.exp(-pixel)
    hard = valid & (prob <= 0.7)
    assert mask.numel() // 16 < hard.sum() < valid.sum()  # more hard pixels than min_kept
    assert float(loss) == pytest.approx(float(pixel[hard].mean()), rel=1e-6)


def test_min_kept_keeps_the_hardest_pixels() -> None:
    logits, mask = _data(1)
    valid = mask != 255
    pixel = F.cross_entropy(logits, mask, ignore_index=255, reduction="none")[valid]
    n_valid = int(valid.sum())
    # threshold 0.01 keeps almost nothing: the 1/2 hardest pixels count instead; 1/2 of all
    # the pixels (the release) or of the valid ones
    for count_ignored, pixels in ((True, mask.numel()), (False, n_valid)):
        ohem = OhemCrossEntropy(thresh=0.01, min_kept_fraction=0.5, count_ignored=count_ignored)
        hardest = pixel.sort(descending=True).values[: int(pixels * 0.5)]
        assert float(ohem(logits, mask)) == pytest.approx(float(hardest.mean()), rel=1e-6)
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
    with pytest.raises(ConfigError, match="count_ignored"):
        OhemCrossEntropy(count_ignored="yes")


def test_min_kept_zero_mines_nothing_as_the_release() -> None:
    """The release's ``if self.min_kept > 0``: with min_kept 0 it is the plain CE."""
    logits = torch.tensor([[[[6.0, 0.0, 6.0]], [[0.0, 0.0, 0.0]]]])  # easy, hard, easy
    mask = torch.zeros(1, 1, 3, dtype=torch.long)
    for fraction in (0.0, 1 / 16):  # int(3 / 16) == 0
        loss = OhemCrossEntropy(thresh=0.7, min_kept_fraction=fraction)(logits, mask)
        assert torch.isfinite(loss)
        assert float(loss) == pytest.approx(float(F.cross_entropy(logits, mask)))
    hard_only = OhemCrossEntropy(thresh=0.7, min_kept_fraction=1 / 3)(logits, mask)
    assert float(hard_only) == pytest.approx(math.log(2))


def test_min_kept_counts_ignored_pixels_as_the_release() -> None:
    """The release's ProbOhemCrossEntropy2d: min_kept = batch·H·W // 16, ignored pixels included.

    32 pixels: the second image all ignored, the first one's 16 pixels all easy (p = 0.75,
    0.76, ..., 0.90 > 0.7). The release keeps 32 // 16 = 2 of them, the two hardest; counting
    the valid pixels only, 16 // 16 = 1 is kept.
    """
    p = 0.75 + 0.01 * torch.arange(16, dtype=torch.float64)
    logits = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
    logits[0, 0] = torch.log(p / (1 - p)).reshape(4, 4)  # two classes: softmax gives p
    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    mask[1] = 255
    release = OhemCrossEntropy(thresh=0.7, min_kept_fraction=1 / 16)
    assert release.min_kept(mask) == 2
    expected = -(math.log(0.75) + math.log(0.76)) / 2
    assert float(release(logits, mask)) == pytest.approx(expected, rel=1e-9)
    valid_only = OhemCrossEntropy(thresh=0.7, min_kept_fraction=1 / 16, count_ignored=False)
    assert valid_only.min_kept(mask) == 1
    assert float(valid_only(logits, mask)) == pytest.approx(-math.log(0.75), rel=1e-9)
    # the release: min_kept above the valid pixels skips the mining (plain CE of the valid ones)
    most = OhemCrossEntropy(thresh=0.7, min_kept_fraction=0.75)  # 24 > 16 valid
    assert float(most(logits, mask)) == pytest.approx(-float(torch.log(p).mean()), rel=1e-9)
