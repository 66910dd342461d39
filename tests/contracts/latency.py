"""The latency-aware contract: the expected latency agrees with the table and covers the space.

For spaces with ``latency_configs(input_size)``, ``expected_latency(table)`` and
``derived_latency(table, genotype)``. Tables are FAKE (:func:`fake_ms`, closed form): these
tests check bookkeeping, never timing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import ClassVar

import pytest
import torch
from torch import nn

from lightning_nas.genotypes import Genotype
from lightning_nas.latency import (
    DerivedLatency,
    LatencyAware,
    LatencyComponents,
    LatencyTable,
    OpConfig,
    build_op,
)


def fake_ms(config: OpConfig) -> float:
    """A closed-form fake latency: an integer in 1..997 from a checksum of the config's key.

    Integers keep every table sum exact in float32, so equalities can be tight; a checksum makes
    two different sets of ops unlikely to sum alike.
    """
    return float(1 + zlib.crc32(config.key.encode()) % 997)


def fake_table(
    configs: list[OpConfig],
    input_size: tuple[int, int],
    left_out: Callable[[OpConfig], bool] | None = None,
) -> LatencyTable:
    """A table of :func:`fake_ms` over ``configs``; entries ``left_out`` are 0 ms."""

    def measure(config: OpConfig) -> float:
        return 0.0 if left_out is not None and left_out(config) else fake_ms(config)

    return LatencyTable.build(configs, input_size=input_size, measure=measure, progress=False)


def set_one_hot(parameter: nn.Parameter, columns: torch.Tensor, value: float = 100.0) -> None:
    """Logits ``+value`` at ``columns[row]`` of each row, ``-value`` elsewhere."""
    with torch.no_grad():
        parameter.fill_(-value)
        parameter[torch.arange(parameter.shape[0]), columns] = value


class LatencyAwareContract:
    """Tests every latency-aware space passes; subclasses set the hooks below.

    Hooks:
        make_space: a tiny space (called after ``torch.manual_seed(0)``).
        input_size: the table's input size (odd sizes exercise the size arithmetic).
        set_one_hot_architecture: make the architecture parameters encode, one-hot (logits
            ±100), a random architecture that the space derives exactly; default: every row of
            every parameter one-hot at a random column (right for spaces whose every row is one
            decision of the derived network; spaces whose derivation keeps a subset of the
            candidates, like DARTS' two edges per node, put ``none`` on the others).
        one_hot_reference: what the one-hot expected latency must equal: default the table
            total of the derived network, ``derived_latency(table)``. A space whose expected
            latency documents leaving parts out overrides ``left_out`` and/or this.
        left_out: configurations of the derived network the expected latency leaves out
            (their entries are 0 in the reference table); default none.
        derivable_genotypes: the networks the space can derive from its current parameters
            (default ``[space.derive()]``).
        latency_blind: architecture parameters the expected latency does not depend on, by
            design (e.g. a teacher's); default none.
    """

    input_size: ClassVar[tuple[int, int]] = (37, 45)
    latency_blind: ClassVar[frozenset[str]] = frozenset()

    # ----------------------------------------------------------------- hooks
    def make_space(self) -> nn.Module:
        raise NotImplementedError("a LatencyAwareContract subclass builds its tiny space")

    def set_one_hot_architecture(self, space: nn.Module, gen: torch.Generator) -> None:
        for p in space.arch_parameters().values():
            set_one_hot(p, torch.randint(p.shape[-1], p.shape[:-1], generator=gen))

    def left_out(self, config: OpConfig) -> bool:
        return False

    def one_hot_reference(self, space: nn.Module, table: LatencyTable) -> float:
        return space.derived_latency(table)

    def derivable_genotypes(self, space: nn.Module) -> list[Genotype]:
        return [space.derive()]

    # ----------------------------------------------------------------- helpers
    def space(self) -> nn.Module:
        torch.manual_seed(0)
        space = self.make_space()
        assert isinstance(space, LatencyAware) and isinstance(space, DerivedLatency)
        return space

    def table(self, space: nn.Module, left_out: bool = False) -> LatencyTable:
        return fake_table(
            space.latency_configs(self.input_size),
            self.input_size,
            self.left_out if left_out else None,
        )

    # ----------------------------------------------------------------- tests
    def test_latency_configs_are_unique_and_valid(self) -> None:
        configs = self.space().latency_configs(self.input_size)
        assert configs and all(isinstance(c, OpConfig) for c in configs)
        keys = [c.key for c in configs]
        assert len(keys) == len(set(keys)), "latency_configs lists a configuration twice"

    def test_every_latency_config_builds_with_the_spaces_op_builder(self) -> None:
        """What a real table build does: ``build_op`` with the space's ``latency_op``."""
        space = self.space()
        for config in space.latency_configs(self.input_size):
            module, shapes = build_op(config, (space.latency_op,))
            assert isinstance(module, nn.Module) and shapes, config.key
            assert all(len(shape) == 3 and min(shape) >= 1 for shape in shapes), config.key

    def test_component_weights_cover_the_components(self) -> None:
        space = self.space()
        if not isinstance(space, LatencyComponents):
            pytest.skip(f"{type(space).__name__} reports one latency term")
        components = space.latency_components(self.table(space), self.input_size)
        weights = space.latency_component_weights()
        assert set(weights) >= set(components) and sum(weights[k] for k in components) > 0

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_one_hot_expected_latency_is_the_table_total_of_the_derived_network(
        self, seed: int
    ) -> None:
        space = self.space()
        table, reference_table = self.table(space), self.table(space, left_out=True)
        self.set_one_hot_architecture(space, torch.Generator().manual_seed(seed))
        expected = space.expected_latency(table)
        assert expected.dim() == 0 and expected.requires_grad
        reference = self.one_hot_reference(space, reference_table)
        assert reference > 0
        assert expected.item() == pytest.approx(reference, rel=1e-6)

    def test_latency_configs_cover_every_derivable_network(self) -> None:
        """Random architectures: every derived network's table lookups succeed (strict)."""
        space = self.space()
        table = self.table(space)
        seen = set()
        gen = torch.Generator().manual_seed(0)
        for _ in range(6):
            with torch.no_grad():
                for p in space.arch_parameters().values():
                    p.copy_(3.0 * torch.randn(p.shape, generator=gen))
            for genotype in self.derivable_genotypes(space):
                ms = space.derived_latency(table, genotype)  # MissingLatencyError if not covered
                assert math.isfinite(ms) and ms > 0
                seen.add(genotype)
        assert len(seen) > 1, "the random architectures all derive one network: a vacuous check"

    def test_expected_latency_reaches_the_architecture_parameters(self) -> None:
        space = self.space()
        table = self.table(space)
        arch = space.arch_parameters()
        assert self.latency_blind <= set(arch), "latency_blind names unknown parameters"
        self.randomize(space)
        space.zero_grad(set_to_none=True)
        space.expected_latency(table).backward()
        moved = {n for n, p in arch.items() if p.grad is not None and p.grad.abs().sum() > 0}
        assert moved == set(arch) - self.latency_blind, {
            "no gradient": sorted(set(arch) - self.latency_blind - moved),
            "unexpected gradient": sorted(moved & self.latency_blind),
        }

    @staticmethod
    def randomize(space: nn.Module) -> None:
        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for p in space.arch_parameters().values():
                p.copy_(torch.randn(p.shape, generator=gen))
