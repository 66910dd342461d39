"""Under 2-process DDP (gloo, CPU) Auto-DeepLab's α and β stay bit-identical across ranks."""

import pytest
import torch
from ddp_search import run_ranks

pytestmark = pytest.mark.slow


def test_alphas_and_betas_identical_across_ranks(tmp_path):
    r0, r1 = run_ranks(tmp_path, "autodeeplab")
    # 32 images -> trainA/trainB 16 each -> 8 per rank -> 4 batches of 2 per epoch, 2 epochs
    assert r0["arch_steps"] == r1["arch_steps"] == 8
    assert set(r0["arch"]) == {"alphas", "betas"}
    for name, value in r0["arch"].items():
        assert torch.equal(value, r1["arch"][name]), name
        assert not torch.equal(value, r0["initial"][name]), f"{name} never moved"
    # the stem's transition row and the α of every block input were trained
    moved = r0["arch"]["betas"] != r0["initial"]["betas"]
    assert moved[0, 0, 1:].all() and (r0["arch"]["alphas"] != r0["initial"]["alphas"]).all()
    assert r0["genotype"] == r1["genotype"]
