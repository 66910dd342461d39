"""Tests of the meta-device network summary (parameters, Multi-Adds, stage shapes)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.networks import AutoDeepLabNetwork, DartsNetwork
from lightning_nas.summary import format_summary, summarize, summarize_genotype, summary_main

GENOTYPES = Path(__file__).resolve().parents[1] / "experiments" / "genotypes"
ADL = str(GENOTYPES / "autodeeplab_cityscapes.yaml")
DARTS = str(GENOTYPES / "darts_v2.yaml")


@pytest.fixture(autouse=True)
def _one_thread():
    """Hundreds of tiny convs: one intra-op thread is far faster on a shared, loaded CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_multi_adds_match_an_analytic_count() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 4, 1),
    )
    s = summarize(net, input_size=(32, 64))
    hw = 16 * 32
    assert s.multi_adds == hw * (3 * 8 * 9 + 8 * 9 + 8 * 4)
    assert s.params == 3 * 8 * 9 + 16 + (8 * 9 + 8) + (8 * 4 + 4)
    assert s.stages == {"0": (8, 16, 32), "1": (8, 16, 32), "2": (8, 16, 32), "3": (8, 16, 32),
                        "4": (4, 16, 32)}  # fmt: skip


def test_summarize_leaves_a_real_network_untouched() -> None:
    torch.manual_seed(0)
    net = AutoDeepLabNetwork(ADL, num_classes=3, filter_multiplier=2, aspp_channels=8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    s = summarize(net, input_size=(129, 257))
    assert net.training and next(net.parameters()).device.type == "cpu"
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert s.params == sum(p.numel() for p in net.parameters())
    assert s.stages["cell_11"] == (20, 17, 33) and s.stride("cell_11") == 8
    assert s.stages["logits"] == (3, 129, 257)


def test_summarize_genotype_darts_uses_children() -> None:
    s = summarize_genotype(DARTS, num_classes=5, input_size=(32, 32), C=4, layers=3)
    assert s.name == "DartsNetwork"
    assert list(s.stages) == ["stem", "cells.0", "cells.1", "cells.2", "head"]
    assert s.stages["head"] == (5, 8, 8)
    with torch.device("meta"):
        net = DartsNetwork(DARTS, num_classes=5, C=4, layers=3)
    assert s.params == sum(p.numel() for p in net.parameters())


def test_summarize_errors() -> None:
    with pytest.raises(ConfigError, match="unexpected keyword"):
        summarize_genotype(ADL, bogus=1)
    with pytest.raises(ConfigError, match="input_size"):
        summarize(nn.Conv2d(3, 3, 1), input_size=(0, 4))


def test_format_summary() -> None:
    s = summarize_genotype(ADL, input_size=(1024, 2048), filter_multiplier=20)
    text = format_summary(s)
    assert "AutoDeepLabNetwork on a 3x1024x2048 input" in text
    assert "10.147 M" in text and "317.54 B" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("cell_8 "))
    assert line.split() == ["cell_8", "800", "32", "64", "32"]


def test_summary_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert summary_main([ADL, "--build-arg", "filter_multiplier=48"]) == 0
    out = capsys.readouterr().out
    assert "44.425 M" in out and "653.58 B" in out and "cell_11" in out
    argv = [ADL, "--num-classes", "3", "--input-size", "65", "65", "--build", "filter_multiplier=4",
            "--json"]  # fmt: skip
    assert summary_main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stages"]["logits"] == [3, 65, 65] and data["input_size"] == [65, 65]


def test_summary_main_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert summary_main(["missing.yaml"]) == 2
    assert "genotype file not found" in capsys.readouterr().err
    assert summary_main([ADL, "--build-arg", "filter_multiplier"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert summary_main([ADL, "--build-arg", "filter_multiplier=0"]) == 2
    assert "filter_multiplier must be" in capsys.readouterr().err
    assert summary_main(["--help"]) == 0
    assert "--build-arg" in capsys.readouterr().out
