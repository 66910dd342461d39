"""DARTS against the contracts: the space, its latency, the network and the loss terms."""

import torch
from contracts import (
    GENOTYPES,
    LatencyAwareContract,
    LossTermContract,
    NetworkContract,
    SearchSpaceContract,
    fake_table,
    set_one_hot,
)

from callbacks import Distillation, LatencyRegularization
from lightning_nas import build_network
from lightning_nas.genotypes import load
from lightning_nas.search import SearchModule
from lightning_nas.spaces import DartsSpace

TINY = {"C": 4, "layers": 3, "steps": 2, "multiplier": 2, "stem_multiplier": 2}


def tiny_space() -> DartsSpace:
    return DartsSpace(num_classes=3, **TINY)


class TestDartsSpace(SearchSpaceContract):
    network_kwargs = {"C": 4, "layers": 3, "stem_multiplier": 2}  # steps: from the genotype

    def make_space(self):
        return tiny_space()


class TestDartsLatency(LatencyAwareContract):
    def make_space(self):
        return tiny_space()

    def set_one_hot_architecture(self, space, gen):
        """Per node two random inputs with a random op each, ``none`` on the other edges.

        ``expected_latency`` counts every edge (``lat(none) = 0``), the derived cell two per node.
        """
        for name, p in space.arch_parameters().items():
            rows, ops = space.arch_labels()[name]
            none = ops.index("none")
            columns = torch.full((len(rows),), none)
            nodes = {}
            for r, label in enumerate(rows):  # "j->node"
                nodes.setdefault(label.split("->")[1], []).append(r)
            for edges in nodes.values():
                for r in torch.randperm(len(edges), generator=gen)[:2].tolist():
                    op = torch.randint(len(ops) - 1, (), generator=gen).item()
                    columns[edges[r]] = op + (op >= none)
            set_one_hot(p, columns)


class TestDartsNetwork(NetworkContract):
    network_kwargs = {"C": 4, "layers": 3}

    def make_genotype(self):
        return load(GENOTYPES / "darts_v2.yaml")


class TestLatencyRegularizationWithDarts(LossTermContract):
    phases = ("arch",)

    def make_module(self):
        return SearchModule(tiny_space())

    def make_term(self, tmp_path):
        table = fake_table(tiny_space().latency_configs(self.input_size), self.input_size)
        return LatencyRegularization(str(table.save(tmp_path / "table.json")), weight=0.5,
                                     fps_window=(1e6, 2e6))  # fmt: skip

    def advance_state(self, term, module):
        """An epoch end under the FPS window: λ doubles (the fake net is far below 1e6 FPS)."""
        term.on_train_epoch_end(None, module)
        assert term.weight == 1.0


class TestDistillationWithDarts(LossTermContract):
    """An external teacher (a tiny DARTS-V2 network); Distillation keeps no state."""

    phases = ("weight",)

    def make_module(self):
        return SearchModule(tiny_space())

    def make_term(self, tmp_path):
        torch.manual_seed(7)
        teacher = build_network(GENOTYPES / "darts_v2.yaml", num_classes=3, C=4, layers=3)
        return Distillation(teacher=teacher, temperature=2.0)
