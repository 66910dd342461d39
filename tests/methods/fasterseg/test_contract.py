"""FasterSeg against the contracts: the space, its latency, the network and the loss terms."""

import dataclasses

import pytest
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
from lightning_nas.genotypes import load
from lightning_nas.search import SearchModule
from lightning_nas.spaces import FasterSegSpace

PAIRS = ((2, 1), (2, 0))


def tiny_space(**kwargs) -> FasterSegSpace:
    return FasterSegSpace(**{"num_classes": 3, "layers": 8, "Fch": 1, "widths": (6, 12), **kwargs})


class TestFasterSegSpace(SearchSpaceContract):
    network_kwargs = {"Fch": 1}

    def make_space(self):
        return tiny_space()


class TestFasterSegLatency(LatencyAwareContract):
    """Three documented deviations, each encoded here.

    * ``latency_recursion: exact``: under the default ``release`` recursion the expected latency
      is the release's ``forward_latency`` accumulation, not a table sum.
    * The path ending at 1/16 is weighted 0 in the one-hot check: the release's derivation
      (``betas2path``) puts the 1/16 branch's downsampling one layer before the cell whose β1
      row chose it, while the expected latency follows β as the supernet does, so that path is
      not the derived 1/16 branch (see ``test_the_16_path_is_the_derived_16_branch`` below).
    * The teacher has no latency term: its α, β are latency-blind.
    """

    latency_blind = frozenset(
        f"{kind}_teacher_{j}" for kind, scales in (("alpha", (0, 1, 2)), ("beta", (1, 2)))
        for j in scales
    )  # fmt: skip

    def make_space(self):
        # 10 layers: several 1/32 paths the derivation can take; unequal scale weights
        return tiny_space(layers=10, latency_recursion="exact", latency_scale_weights=(1, 0, 3))

    def left_out(self, config):
        """``expected_latency`` covers the stem and the cells; the head is left out."""
        return config.op in {"fs_convnorm1x1", "fs_up2_concat", "fs_convnorm3x3", "concat",
                             "fs_head", "fs_upsample"}  # fmt: skip

    def set_one_hot_architecture(self, space, gen):
        """One-hot α (no ``skip``), γ and a β the derivation's path rule reads back.

        The derivation removes (or replaces) ``skip`` cells, which ``expected_latency`` counts
        at their table latency: the student's α avoids it. β: every two-input cell keeps its
        scale but one 1/16 cell (β1 row ``i``) and one 1/32 cell (β2 row ``j``) that take the
        down input, ``1 <= i < j - 1``, ``j < L - 4`` — then the β-weighted lattice paths and
        the release's ``betas2path`` agree on the branches ending at 1/8 and 1/32 (and on 1/16
        but for its one-layer shift, see the class docstring).
        """
        for name, p in space.arch_parameters().items():
            if not name.startswith("beta_student"):
                low = 1 if name.startswith("alpha_student") else 0  # column 0 is skip
                set_one_hot(p, torch.randint(low, p.shape[1], (p.shape[0],), generator=gen))
        layers = space.layers
        j = torch.randint(3, layers - 4, (), generator=gen).item()
        i = torch.randint(1, j - 1, (), generator=gen).item()
        for name, down in (("beta_student_1", i), ("beta_student_2", j)):
            p = space.arch_parameters()[name]
            columns = torch.ones(p.shape[0], dtype=torch.long)  # keep
            columns[down] = 0  # from the down path
            set_one_hot(p, columns)

    def one_hot_reference(self, space, table):
        """Σ_s w_s · (table total of the derived branch ending at scale s, alone)."""
        branches = {}
        for pair in PAIRS:
            g = space.derive_pair(pair)
            for b in range(len(g.ops)):
                single = dataclasses.replace(
                    g, ops=(g.ops[b],), paths=(g.paths[b],), widths=(g.widths[b],)
                )
                assert branches.setdefault(g.paths[b][-1], single) == single
                assert len(g.ops[b]) == space.layers  # nothing pruned: no skip chosen
        return sum(
            w * space.derived_latency(table, branches[s])
            for s, w in enumerate(space.latency_scale_weights)
        )

    def derivable_genotypes(self, space):
        return [space.derive_pair(pair) for pair in PAIRS]


class TestFasterSegNetwork(NetworkContract):
    network_kwargs = {"Fch": 2}

    def make_genotype(self):
        return load(GENOTYPES / "fasterseg_cityscapes.yaml")

    def training_outputs(self, net, x):
        """The 1/16 and 1/32 auxiliary heads train through ``forward_aux`` (``aux_weights``)."""
        return net.forward_aux(x)


class TestLatencyRegularizationWithFasterSeg(LossTermContract):
    phases = ("arch",)

    def make_module(self):
        return SearchModule(tiny_space(teacher=False, sandwich=False))  # one pass per forward

    def make_term(self, tmp_path):
        table = fake_table(tiny_space().latency_configs(self.input_size), self.input_size)
        return LatencyRegularization(str(table.save(tmp_path / "table.json")), weight=0.5,
                                     fps_window=(1e6, 2e6))  # fmt: skip

    def advance_state(self, term, module):
        """An epoch end under the FPS window: λ doubles (both branch pairs below 1e6 FPS)."""
        term.on_train_epoch_end(None, module)
        assert term.weight == 1.0


class TestCoSearchDistillation(LossTermContract):
    """No teacher given: the supernet's own teacher (``teacher_logits``), both phases."""

    phases = ("weight", "arch")

    def make_module(self):
        return SearchModule(tiny_space(sandwich=False))  # the teacher and one student pass

    def make_term(self, tmp_path):
        return Distillation(phases=("weight", "arch"))


class _WithThe16Path(TestFasterSegLatency):
    def make_space(self):
        return tiny_space(layers=10, latency_recursion="exact", latency_scale_weights=(1, 2, 3))


@pytest.mark.xfail(
    strict=True,
    reason="the derived 1/16 branch goes down at layer r + 1 for the β1 row r of the cell at "
    "layer r + 2 (the release's betas2path, reproduced on purpose, spaces/_fasterseg_derive.py), "
    "so the expected latency's 1/16 path is not the derived 1/16 branch's table total",
)
def test_the_16_path_is_the_derived_16_branch() -> None:
    _WithThe16Path().test_one_hot_expected_latency_is_the_table_total_of_the_derived_network(0)
