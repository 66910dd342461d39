"""Under 2-process DDP (gloo, CPU) FasterSeg samples the same widths on every rank, so its α, β
and γ stay bit-identical."""

import pytest
import torch
from ddp_search import run_ranks

pytestmark = pytest.mark.slow


def test_samples_and_architecture_identical_across_ranks(tmp_path):
    r0, r1 = run_ranks(tmp_path, "fasterseg")
    assert r0["arch_steps"] == r1["arch_steps"] == 8
    assert {k.rsplit("_", 1)[0] for k in r0["arch"]} == {
        "alpha_teacher", "beta_teacher", "alpha_student", "beta_student", "ratio_student"
    }  # fmt: skip
    for name, value in r0["arch"].items():
        assert torch.equal(value, r1["arch"][name]), name
        assert not torch.equal(value, r0["initial"][name]), f"{name} never moved"
    # every forward draws (the counter is a buffer, so it is also what DDP broadcasts)
    assert int(r0["buffers"]["sample_step"]) == int(r1["buffers"]["sample_step"]) > 0
    assert r0["genotype"] == r1["genotype"]
    # the widths sampled at each step are the same on both ranks, and do vary over steps
    assert len(r0["samples"]) == 8 and r0["samples"] == r1["samples"]  # 4 steps × 2 epochs
    assert len({str(s) for s in r0["samples"]}) > 1
