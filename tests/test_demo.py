"""The demo's report of how far the architecture moved (the demo itself runs as `make demo`)."""

import math
from pathlib import Path

import pytest
import torch

from lightning_nas.demo import DEMO_ARCH_LR, entropy_ratio


def test_entropy_ratio_hand_computed():
    assert entropy_ratio(torch.zeros(14, 8)) == pytest.approx(1.0)
    assert entropy_ratio(torch.tensor([[100.0, 0.0, 0.0, 0.0]])) == pytest.approx(0.0, abs=1e-12)
    # p = (1/2, 1/2, 0, 0) over 4 ops: entropy log 2 over log 4 = 1/2
    half = torch.tensor([[0.0, 0.0, -1e4, -1e4]])
    assert entropy_ratio(half) == pytest.approx(0.5)
    # rows are averaged: (1 + 1/2) / 2
    both = torch.cat([torch.zeros(1, 4), half])
    assert entropy_ratio(both) == pytest.approx(0.75)
    p = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0)
    h = -(p * p.log()).sum()
    assert entropy_ratio(torch.tensor([[1.0, 2.0, 3.0]])) == pytest.approx(float(h) / math.log(3))


def test_the_demo_setting_is_not_the_recipe():
    import yaml

    recipe = yaml.safe_load((Path(__file__).parents[1] / "experiments/darts.yaml").read_text())
    lr = recipe["model"]["init_args"]["arch_optimizer"]["init_args"]["lr"]
    assert lr == 3e-4 and DEMO_ARCH_LR > lr  # the demo-only value is the demo's alone
