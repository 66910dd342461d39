"""Raising LatencyRegularization's weight gives a cheaper derived FasterSeg student.

Two short FasterSeg searches from the same (random) architecture, data and seeds, differing only
in λ (0 and 10, the three latency components weighted equally so that the widths feel the term
too). The table is a closed-form fake (cost ∝ multiply-adds of each op, plus a per-op overhead):
this test is about what the search does with a table, not about timing. The measured version —
the same two searches on a table timed on this CPU, the derived students timed end to end — is
``benchmarks/latency_weight.py``, which prints the ratio.
"""

import lightning.pytorch as pl
import pytest
import torch

from callbacks import LatencyRegularization
from lightning_nas.data import SyntheticDataModule
from lightning_nas.latency import LatencyTable, OpConfig
from lightning_nas.methods.fasterseg.space import FasterSegSpace
from lightning_nas.search import SearchModule

SIZE = (64, 64)
EQUAL = {"operators": 1.0, "strides": 1.0, "expansion": 1.0}
SPACE = {"num_classes": 6, "layers": 8, "Fch": 4, "widths": (4, 12), "teacher": False}

pytestmark = pytest.mark.slow


def fake_ms(c: OpConfig) -> float:
    """Multiply-adds (millions) of a 3×3 conv of the op's shape, ×2 for two convs, ÷4 zoomed."""
    convs = 2.0 if "2x" in c.op else 1.0
    zoom = 0.25 if "downup" in c.op else 1.0
    macs = 9 * c.C_in * c.C_out * c.H * c.W / c.stride**2
    return 0.05 + 1e-6 * macs * convs * zoom


def search(
    table, weight: float, root, out, space: dict = SPACE, epochs: int = 2, image_size: int = 32
) -> FasterSegSpace:
    """A short search from a fixed random architecture with latency weight ``weight``.

    Also run by ``benchmarks/latency_weight.py`` (on a timed table, a larger space).
    """
    pl.seed_everything(0)
    space = FasterSegSpace(sandwich=False, **space)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the same random starting architecture for every λ
        for p in space.arch_parameters().values():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    module = SearchModule(
        space,
        arch_optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.3}},
        weight_lr_scheduler=None,
    )
    data = SyntheticDataModule(
        root=str(root), num_train=16, num_val=4, image_size=image_size, search=True, batch_size=2
    )
    pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=out,
        callbacks=[LatencyRegularization(str(table), weight=weight, component_weights=EQUAL)],
    ).fit(module, data)
    return space


def test_higher_latency_weight_gives_a_cheaper_student(tmp_path, synthetic_root):
    configs = FasterSegSpace(**SPACE).latency_configs(SIZE)
    table = LatencyTable.build(configs, input_size=SIZE, measure=fake_ms, progress=False)
    path = table.save(tmp_path / "fasterseg.json")
    spaces = {w: search(path, w, synthetic_root, tmp_path / str(w)) for w in (0.0, 10.0)}
    genotypes = {w: s.derive() for w, s in spaces.items()}
    assert genotypes[0.0] != genotypes[10.0]
    estimate = {w: spaces[w].derived_latency(table) for w in spaces}
    expected = {w: float(spaces[w].expected_latency(table).detach()) for w in spaces}
    assert estimate[10.0] < estimate[0.0], estimate
    assert expected[10.0] < expected[0.0], expected
    # the pressure reaches the widths: λ = 10 ends with more of the narrow width chosen
    narrow = {w: sum(row.count(4) for row in g.widths) for w, g in genotypes.items()}
    assert narrow[10.0] >= narrow[0.0], narrow
