"""The loss-term contract: what every :class:`~lightning_nas.loss_terms.LossTerm` callback must do.

Subclass :class:`LossTermContract` as ``TestXxxTerm`` with :meth:`~LossTermContract.make_term`,
:meth:`~LossTermContract.make_module` and, for a stateful callback,
:meth:`~LossTermContract.advance_state`.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule

from lightning_nas.loss_terms import LossTerm, collect_terms

PHASES = ("weight", "arch")


class LossTermContract:
    """Tests every loss-term callback passes; subclasses set the hooks below.

    Hooks:
        make_term: the callback (``tmp_path`` for files it needs, e.g. a latency table).
        make_module: the module it is used with (a ``SearchModule`` around a tiny space, ...).
        phases: the search phases the term contributes to; it returns ``None`` for the others.
        advance_state: change the callback's state as training would (e.g. an adaptive weight
            updated at an epoch end); default: nothing — a stateless callback, whose
            ``state_dict()`` is then checked to be empty.
        logits: the logits the term is given (default: what ``SearchModule`` passes, the
            space's ``output_logits`` of a training forward in that phase).

    The callback is set up as the trainer does at fit start, ``setup(trainer, module, "fit")``,
    without a trainer: computing a term must not need one.
    """

    phases: ClassVar[tuple[str, ...]] = ("weight",)
    num_classes: ClassVar[int] = 3
    batch_size: ClassVar[int] = 2
    input_size: ClassVar[tuple[int, int]] = (32, 32)

    # ----------------------------------------------------------------- hooks
    def make_term(self, tmp_path: Path) -> LossTerm:
        raise NotImplementedError("a LossTermContract subclass builds its callback")

    def make_module(self) -> LightningModule:
        raise NotImplementedError("a LossTermContract subclass builds the module it runs with")

    def advance_state(self, term: LossTerm, module: LightningModule) -> None:
        """Stateless by default."""

    def logits(self, module: LightningModule, batch: dict[str, Any], phase: str) -> torch.Tensor:
        space = module.space
        space.train()
        space.set_phase(phase)
        return space.output_logits(space(batch["image"]))

    # ----------------------------------------------------------------- helpers
    def prepare(self, tmp_path: Path) -> tuple[LossTerm, LightningModule]:
        tmp_path.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        module = self.make_module()
        term = self.make_term(tmp_path)
        assert isinstance(term, LossTerm)
        term.setup(None, module, "fit")
        return term, module

    def batch(self) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(1)
        h, w = self.input_size
        mask = torch.randint(0, self.num_classes, (self.batch_size, h, w), generator=gen)
        mask[:, : h // 4] = 255
        return {"image": torch.randn(self.batch_size, 3, h, w, generator=gen), "mask": mask}

    @staticmethod
    def term_of(term: LossTerm, phase: str, *args: Any) -> torch.Tensor | None:
        return (term.weight_loss if phase == "weight" else term.arch_loss)(*args)

    # ----------------------------------------------------------------- tests
    def test_contributes_a_differentiable_scalar_to_its_phases_only(self, tmp_path) -> None:
        term, module = self.prepare(tmp_path)
        batch = self.batch()
        assert set(self.phases) <= set(PHASES) and self.phases
        for phase in PHASES:
            logits = self.logits(module, batch, phase)
            value = self.term_of(term, phase, module, logits, batch)
            if phase not in self.phases:
                assert value is None, phase
                assert collect_terms([term], phase, module, logits, batch) == {}
                continue
            assert isinstance(value, torch.Tensor) and value.dim() == 0, phase
            assert torch.isfinite(value) and value.requires_grad, phase
            terms = collect_terms([term], phase, module, logits, batch)
            assert list(terms) == [term.name] and torch.equal(terms[term.name], value)

    def test_terms_are_pure(self, tmp_path) -> None:
        """Same inputs, same value; the callback's state is not touched by computing terms."""
        term, module = self.prepare(tmp_path)
        batch = self.batch()
        before = copy.deepcopy(term.state_dict())
        for phase in self.phases:
            logits = self.logits(module, batch, phase)
            first = self.term_of(term, phase, module, logits, batch)
            second = self.term_of(term, phase, module, logits, batch)
            assert torch.equal(first, second), phase
            again = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}
            third = self.term_of(term, phase, module, logits, again)  # a new, equal batch
            torch.testing.assert_close(third, first, rtol=1e-6, atol=1e-7)
        assert term.state_dict() == before

    def test_state_dict_round_trip_restores_the_state(self, tmp_path) -> None:
        """Save → reload → compare: the state and the terms it gives (checkpoint + resume)."""
        term, module = self.prepare(tmp_path)
        initial = copy.deepcopy(term.state_dict())
        self.advance_state(term, module)
        state = term.state_dict()
        buffer = io.BytesIO()
        torch.save(state, buffer)  # as a checkpoint stores it: plain data
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)

        fresh, _ = self.prepare(tmp_path / "fresh")
        if not state:
            assert type(self).advance_state is LossTermContract.advance_state, (
                "advance_state changes a state that state_dict() does not save"
            )
        else:
            assert state != initial, "advance_state did not change the state: a vacuous check"
            assert fresh.state_dict() != state
        fresh.load_state_dict(saved)
        assert fresh.state_dict() == state
        batch = self.batch()
        for phase in self.phases:
            logits = self.logits(module, batch, phase)
            ours = self.term_of(term, phase, module, logits, batch)
            theirs = self.term_of(fresh, phase, module, logits, batch)
            assert torch.equal(ours, theirs), phase
