"""Raising LatencyRegularization's weight lowers the measured latency of the derived student.

Two short FasterSeg searches from the same (random) architecture, data and seeds, differing only
in λ (0 and 10, the three latency components weighted equally so that the widths feel the term
too); the derived students are built and timed end to end on this CPU at 256×256, where
convolutions rather than per-op overheads dominate, with the same routine as the table entries
(interleaved rounds, the minimum kept: robust to a busy machine). Measured on the 2-core
machine: about 13 ms (λ = 10: every width 4/12, cheap ops) against 18-19 ms (λ = 0).
"""

import lightning.pytorch as pl
import pytest
import torch

from callbacks import LatencyRegularization
from lightning_nas.data import SyntheticDataModule
from lightning_nas.latency import LatencyTable, measure_module
from lightning_nas.search import SearchModule
from lightning_nas.spaces.fasterseg import FasterSegSpace

SIZE = (256, 256)
EQUAL = {"operators": 1.0, "strides": 1.0, "expansion": 1.0}
SPACE = {"num_classes": 6, "layers": 8, "Fch": 8, "widths": (4, 12), "teacher": False}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    torch.set_num_threads(1)
    space = FasterSegSpace(**SPACE)
    built = LatencyTable.build(
        space.latency_configs(SIZE), input_size=SIZE, warmup=2, repeats=5, progress=False
    )
    return built.save(tmp_path_factory.mktemp("tables") / "fasterseg.json")


def _search(table, weight: float, root, tmp_path):
    pl.seed_everything(0)
    space = FasterSegSpace(sandwich=False, **SPACE)
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
        root=root, num_train=16, num_val=4, image_size=64, search=True, batch_size=2
    )
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        callbacks=[LatencyRegularization(str(table), weight=weight, component_weights=EQUAL)],
    )
    trainer.fit(module, data)
    return space


def test_higher_latency_weight_gives_a_faster_student(table, tmp_path, synthetic_root):
    torch.set_num_threads(1)
    loaded = LatencyTable.load(table)
    spaces = {w: _search(table, w, synthetic_root, tmp_path / str(w)) for w in (0.0, 10.0)}
    genotypes = {w: s.derive() for w, s in spaces.items()}
    assert genotypes[0.0] != genotypes[10.0]
    estimates = {w: spaces[w].derived_latency(loaded) for w in spaces}
    assert estimates[10.0] < estimates[0.0]
    nets = {w: g.build(num_classes=6, Fch=8, aux_heads=False).eval() for w, g in genotypes.items()}
    x = torch.randn(1, 3, *SIZE)
    rounds = {w: [] for w in nets}
    for _ in range(5):
        for w, net in nets.items():
            rounds[w].append(measure_module(net, [x], warmup=3, repeats=10))
    measured = {w: min(r) for w, r in rounds.items()}
    assert measured[10.0] < measured[0.0], (measured, estimates)
