"""Under 2-process DDP (gloo, CPU) the architecture parameters stay bit-identical across ranks."""

import pytest
import torch
from ddp_search import run_ranks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("unrolled", [False, True], ids=["first_order", "second_order"])
def test_alphas_identical_across_ranks(tmp_path, synthetic_root, unrolled):
    r0, r1 = run_ranks(tmp_path, "darts", unrolled)
    # 32 images -> trainA/trainB 16 each -> 8 per rank -> 4 batches of 2 per epoch, 2 epochs
    assert r0["steps"] == r1["steps"] == 2 * 4 * 2  # two optimizer steps per batch
    assert len(r0["names"]) == 16 and set(r0["names"]).isdisjoint(r1["names"])  # epoch 0 shards
    for name, value in r0["arch"].items():
        assert torch.equal(value, r1["arch"][name]), name
        assert not torch.equal(value, r0["initial"][name]), f"{name} never moved"
