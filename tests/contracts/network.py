"""The network contract: what every genotype kind's discrete network must do to be retrained.

Subclass :class:`NetworkContract` as ``TestXxxNetwork`` with :meth:`~NetworkContract.make_genotype`
(a shipped genotype) and ``network_kwargs`` (tiny widths).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas import build_network
from lightning_nas.genotypes import Genotype


class NetworkContract:
    """Tests every network built by ``build_network`` passes; subclasses set the hooks below.

    Hooks:
        make_genotype: the genotype (e.g. a published one under ``experiments/genotypes/``).
        network_kwargs: keyword arguments of ``build_network`` (tiny widths).
        training_outputs: every output a training step backpropagates through (default: the
            logits ``net(x)``); a network whose auxiliary heads are trained through another
            entry point (``forward_aux``) returns those too, so that the check "the backward
            reaches every parameter" covers them.
    """

    num_classes: ClassVar[int] = 3
    batch_size: ClassVar[int] = 2
    input_size: ClassVar[tuple[int, int]] = (32, 32)
    odd_input_size: ClassVar[tuple[int, int]] = (29, 35)
    network_kwargs: ClassVar[dict[str, Any]] = {}

    # ----------------------------------------------------------------- hooks
    def make_genotype(self) -> Genotype:
        raise NotImplementedError("a NetworkContract subclass names its genotype")

    def training_outputs(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (net(x),)

    # ----------------------------------------------------------------- helpers
    def network(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return build_network(
            self.make_genotype(), num_classes=self.num_classes, **self.network_kwargs
        )

    def images(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1)
        return torch.randn(self.batch_size, 3, *(size or self.input_size), generator=gen)

    # ----------------------------------------------------------------- tests
    def test_eval_logits_at_the_input_size_are_deterministic(self) -> None:
        net = self.network().eval()
        buffers = {k: v.clone() for k, v in net.state_dict().items()}
        for size in (self.input_size, self.odd_input_size):
            x = self.images(size)
            with torch.no_grad():
                first, second = net(x), net(x)
            assert tuple(first.shape) == (self.batch_size, self.num_classes, *size)
            assert torch.isfinite(first).all()
            assert torch.equal(first, second)
        after = net.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in buffers.items()), "eval changed state"

    def test_training_backward_reaches_every_parameter(self) -> None:
        net = self.network().train()
        x = self.images()
        gen = torch.Generator().manual_seed(2)
        target = torch.randint(0, self.num_classes, (self.batch_size, *self.input_size),
                               generator=gen)  # fmt: skip
        outputs = self.training_outputs(net, x)
        loss = 0.0
        for out in outputs:
            assert tuple(out.shape) == (self.batch_size, self.num_classes, *self.input_size)
            loss = loss + F.cross_entropy(out, target)
        loss.backward()
        unreached = [
            name
            for name, p in net.named_parameters()
            if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
        ]
        assert not unreached, unreached

    def test_state_dict_round_trip_gives_the_same_logits(self) -> None:
        net = self.network(seed=0)
        fresh = self.network(seed=1)
        x = self.images()
        with torch.no_grad():
            net.train()(x)  # move the BatchNorm statistics away from their initial values
            reference = net.eval()(x)
            assert not torch.equal(fresh.eval()(x), reference), "vacuous: same initial weights"
            fresh.load_state_dict(net.state_dict())
            assert torch.equal(fresh(x), reference)
