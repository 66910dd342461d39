"""The search-space contract: what every supernet must do for the search, derive and retrain.

Subclass :class:`SearchSpaceContract` as ``TestXxxSpace`` in ``tests/methods/<name>/`` and give
:meth:`~SearchSpaceContract.make_space` (a tiny space) and ``network_kwargs`` (the tiny macro
settings of the derived network); override a documented hook only where the space documents a
deviation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from lightning_nas import build_network
from lightning_nas.genotypes import Genotype, load, save
from lightning_nas.spaces.base import SearchSpace

IGNORE_INDEX = 255


class SearchSpaceContract:
    """Tests every search space passes; subclasses set the hooks below.

    Hooks:
        make_space: a tiny space (called after ``torch.manual_seed(0)``).
        num_classes: the space's classes (``make_space`` must build it with this many).
        network_kwargs: keyword arguments of ``build_network`` for the derived genotype (tiny
            widths matching the space's).
        input_size / odd_input_size: the inputs the forward is checked at.
        arch_phase_blind: architecture parameters the ``"arch"`` phase's search loss does not
            reach, by design (documented per space; default none). The contract checks that
            they get no gradient *and* that every other one does.
    """

    num_classes: ClassVar[int] = 3
    batch_size: ClassVar[int] = 2
    input_size: ClassVar[tuple[int, int]] = (32, 32)
    odd_input_size: ClassVar[tuple[int, int]] = (29, 35)
    network_kwargs: ClassVar[dict[str, Any]] = {}
    arch_phase_blind: ClassVar[frozenset[str]] = frozenset()

    # ----------------------------------------------------------------- hooks
    def make_space(self) -> SearchSpace:
        raise NotImplementedError("a SearchSpaceContract subclass builds its tiny space")

    def randomize_arch(self, space: SearchSpace, seed: int) -> None:
        """Architecture parameters far from their initial value (derivations then differ)."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in space.arch_parameters().values():
                p.copy_(2.0 * torch.randn(p.shape, generator=gen))

    # ----------------------------------------------------------------- helpers
    def space(self) -> SearchSpace:
        torch.manual_seed(0)
        space = self.make_space()
        assert isinstance(space, SearchSpace)
        assert space.num_classes == self.num_classes
        return space

    def batch(self, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = size or self.input_size
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(self.batch_size, 3, h, w, generator=gen)
        mask = torch.randint(0, self.num_classes, (self.batch_size, h, w), generator=gen)
        mask[:, : h // 4] = IGNORE_INDEX  # the loss must honour the ignore index
        return x, mask

    # ----------------------------------------------------------------- forward
    def test_eval_forward_gives_logits_at_the_input_size(self) -> None:
        space = self.space().eval()
        for size in (self.input_size, self.odd_input_size):
            x, _ = self.batch(size)
            with torch.no_grad():
                first, second = space(x), space(x)
            assert isinstance(first, torch.Tensor)
            assert tuple(first.shape) == (self.batch_size, self.num_classes, *size)
            assert torch.isfinite(first).all()
            assert torch.equal(first, second), "eval forward is not deterministic"

    def test_training_output_logits_have_batch_and_classes(self) -> None:
        """``output_logits`` of a training forward: ``(N, K, h, w)`` (any resolution)."""
        space = self.space().train()
        x, _ = self.batch()
        for phase in ("weight", "arch"):
            space.set_phase(phase)
            logits = space.output_logits(space(x))
            assert logits.dim() == 4, phase
            assert tuple(logits.shape[:2]) == (self.batch_size, self.num_classes), phase
            assert logits.requires_grad, phase

    # ----------------------------------------------------------------- parameters
    def test_weight_and_arch_parameters_are_disjoint_and_complete(self) -> None:
        space = self.space()
        arch = space.arch_parameters()
        assert arch, "a search space has architecture parameters"
        assert all(isinstance(k, str) and k for k in arch)
        arch_ids = [id(p) for p in arch.values()]
        weight_ids = [id(p) for p in space.weight_parameters()]
        all_ids = {id(p) for p in space.parameters()}
        assert len(set(arch_ids)) == len(arch_ids), "an architecture parameter is listed twice"
        assert len(set(weight_ids)) == len(weight_ids), "a weight is listed twice"
        assert weight_ids, "a search space has weights"
        assert set(weight_ids).isdisjoint(arch_ids)
        assert set(weight_ids) | set(arch_ids) == all_ids
        assert len(weight_ids) + len(arch_ids) == len(all_ids)

    def test_arch_phase_search_loss_reaches_the_architecture_parameters(self) -> None:
        """As ``SearchModule`` computes the architecture loss: phase, forward, search loss."""
        space = self.space().train()
        arch = space.arch_parameters()
        assert self.arch_phase_blind <= set(arch), "arch_phase_blind names unknown parameters"
        x, mask = self.batch()
        space.set_phase("arch")
        loss = space.search_loss(space(x), mask, IGNORE_INDEX)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
        space.zero_grad(set_to_none=True)
        loss.backward()
        moved = {name for name, p in arch.items() if p.grad is not None and p.grad.abs().sum() > 0}
        assert moved == set(arch) - self.arch_phase_blind, {
            "no gradient": sorted(set(arch) - self.arch_phase_blind - moved),
            "unexpected gradient": sorted(moved & self.arch_phase_blind),
        }

    # ----------------------------------------------------------------- derivation
    def test_derive_round_trips_through_yaml_and_builds(self, tmp_path: Path) -> None:
        space = self.space()
        self.randomize_arch(space, seed=3)
        genotype = space.derive()
        assert isinstance(genotype, Genotype)
        path = tmp_path / "genotype.yaml"
        save(genotype, path)
        loaded = load(path)
        assert type(loaded) is type(genotype) and loaded == genotype
        assert space.derive() == genotype, "derive() is not a pure function of the parameters"
        net = build_network(str(path), num_classes=self.num_classes, **self.network_kwargs)
        x, _ = self.batch()
        with torch.no_grad():
            logits = net.eval()(x)
        assert tuple(logits.shape) == (self.batch_size, self.num_classes, *self.input_size)
        assert torch.isfinite(logits).all()

    def test_state_dict_round_trip_keeps_the_derivation(self) -> None:
        space = self.space()
        self.randomize_arch(space, seed=4)
        torch.manual_seed(1)
        fresh = self.make_space()
        assert fresh.derive() != space.derive(), "pick another seed: the check would be vacuous"
        fresh.load_state_dict(space.state_dict())
        assert fresh.derive() == space.derive()
        x, _ = self.batch()
        with torch.no_grad():
            assert torch.equal(fresh.eval()(x), space.eval()(x))
