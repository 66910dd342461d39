"""Auto-DeepLab against the contracts: the space, its latency, the network and the loss terms."""

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

from callbacks import LatencyRegularization
from lightning_nas.genotypes import load
from lightning_nas.search import SearchModule
from lightning_nas.spaces import AutoDeepLabSpace

HEAD = {"aspp_channels": 8, "decoder_channels": 8, "low_level_channels": 4}


def tiny_space(layers: int = 3) -> AutoDeepLabSpace:
    return AutoDeepLabSpace(num_classes=3, layers=layers, filter_multiplier=2, blocks=3)


class TestAutoDeepLabSpace(SearchSpaceContract):
    network_kwargs = {"filter_multiplier": 2, **HEAD}

    def make_space(self):
        return tiny_space()


class TestAutoDeepLabLatency(LatencyAwareContract):
    def make_space(self):
        return tiny_space(layers=4)

    def set_one_hot_architecture(self, space, gen):
        """α: per block two random inputs with a random op, ``none`` elsewhere; β: a random path.

        ``expected_latency`` counts every edge of the cell (``lat(none) = 0``), the derived cell
        two per block; β one-hot on the transitions of one path (its probability is then 1).
        """
        rows, ops = space.arch_labels()["alphas"]
        none = ops.index("none")
        columns = torch.full((len(rows),), none)
        blocks = {}
        for r, label in enumerate(rows):  # "b<block>_in<input>"
            blocks.setdefault(label.split("_")[0], []).append(r)
        for edges in blocks.values():
            for r in torch.randperm(len(edges), generator=gen)[:2].tolist():
                op = torch.randint(len(ops) - 1, (), generator=gen).item()
                columns[edges[r]] = op + (op >= none)
        set_one_hot(space.alphas, columns)
        levels = space.betas.shape[1]
        with torch.no_grad():
            space.betas.fill_(-100.0)
            level = 0  # the stem
            for layer in range(space.betas.shape[0]):
                moves = [m for m in (-1, 0, 1) if 0 <= level + m < levels]
                move = moves[torch.randint(len(moves), (), generator=gen).item()]
                space.betas[layer, level, move + 1] = 100.0
                level += move


class TestAutoDeepLabNetwork(NetworkContract):
    network_kwargs = {"filter_multiplier": 2, **HEAD}

    def make_genotype(self):
        return load(GENOTYPES / "autodeeplab_cityscapes.yaml")


class TestLatencyRegularizationWithAutoDeepLab(LossTermContract):
    phases = ("arch",)

    def make_module(self):
        return SearchModule(tiny_space(layers=2))

    def make_term(self, tmp_path):
        configs = tiny_space(layers=2).latency_configs(self.input_size)
        path = fake_table(configs, self.input_size).save(tmp_path / "table.json")
        return LatencyRegularization(str(path), weight=0.5, fps_window=(1e6, 2e6))

    def advance_state(self, term, module):
        """An epoch end under the FPS window: λ doubles (the fake net is far below 1e6 FPS)."""
        term.on_train_epoch_end(None, module)
        assert term.weight == 1.0
