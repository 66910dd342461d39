"""The search step's speed and memory options compute what the previous formulation computes.

``_FUSED_KERNELS`` (the default) against the previous formulation (``_FUSED_KERNELS = False``):
the loss is bit-identical here and the gradients agree to float rounding (the fused kernels sum
in another order); cell checkpointing on the fused path is exact (bit-identical gradients);
the grouped BatchNorm call equals the per-module calls. bf16 autocast is only an option: it
runs and trains the architecture.
"""

from __future__ import annotations

import copy

import pytest
import torch

import lightning_nas.methods.autodeeplab.space as adl
from lightning_nas.methods.autodeeplab.space import AutoDeepLabSpace, _batch_norms, _BatchNorm


def _space(**kwargs: object) -> AutoDeepLabSpace:
    torch.manual_seed(0)
    # α far from uniform so every op's weight matters; 64 px: a 16×16 level (channels-last path)
    kw = {"num_classes": 3, "layers": 2, "filter_multiplier": 2, "alpha_init_std": 0.5}
    return AutoDeepLabSpace(**{**kw, **kwargs}).train()  # type: ignore[arg-type]


def _loss(space: AutoDeepLabSpace, x: torch.Tensor) -> torch.Tensor:
    y = torch.randint(0, 3, (x.shape[0], *x.shape[-2:]), generator=torch.Generator().manual_seed(1))
    return space.search_loss(space(x), y, 255)


def _grads_close(a: AutoDeepLabSpace, b: AutoDeepLabSpace, rtol: float) -> None:
    """Gradients equal up to float rounding: entries summed in another order."""
    top = max(float(q.grad.abs().max()) for q in b.parameters() if q.grad is not None)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.grad is not None and q.grad is not None, name
        # relative to the tensor's largest gradient, with a floor for tensors whose gradient
        # is zero up to cancellation (e.g. a bias before a BatchNorm)
        scale = max(float(q.grad.abs().max()), 1e-3 * top)
        torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=rtol * scale, msg=name)


@pytest.mark.parametrize("partial_channels", [1, 2])
def test_fused_kernels_compute_the_previous_step(partial_channels: int, monkeypatch) -> None:
    # F = 4: with K = 2 every mixed op still sees 2 channels (with 1, a 1×1 conv before a
    # non-affine BatchNorm has a zero gradient, and rounding noise is all that is compared)
    fused = _space(partial_channels=partial_channels, filter_multiplier=4)
    previous = copy.deepcopy(fused)
    x = torch.randn(2, 3, 64, 64)
    loss = _loss(fused, x)
    loss.backward()
    monkeypatch.setattr(adl, "_FUSED_KERNELS", False)
    expected = _loss(previous, x)
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    _grads_close(fused, previous, rtol=5e-5)
    for (name, a), (_, b) in zip(fused.named_buffers(), previous.named_buffers()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        else:
            assert torch.equal(a, b), name


def test_checkpointing_the_fused_cells_is_exact() -> None:
    plain = _space()
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpoint_cells = True
    x = torch.randn(2, 3, 64, 64)
    loss_a, loss_b = _loss(plain, x), _loss(checkpointed, x)
    assert torch.equal(loss_a, loss_b)
    loss_a.backward()
    loss_b.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert a.grad is not None and b.grad is not None, name
        assert torch.equal(a.grad, b.grad), name
    for (name, a), (_, b) in zip(plain.named_buffers(), checkpointed.named_buffers()):
        assert torch.equal(a, b), name  # the recomputation leaves the statistics alone


@pytest.mark.parametrize("chunks,repeats", [(1, 1), (3, 1), (1, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_grouped_batch_norms_equal_separate_calls(chunks: int, repeats: int, momentum) -> None:
    torch.manual_seed(0)
    bns = [_BatchNorm(c, affine=False, momentum=momentum) for c in (3, 2)]
    reference = copy.deepcopy(bns)
    for step in range(2):  # the second update starts from non-trivial running statistics
        x = (1.0 + step) * torch.randn(2 * chunks, 5, 4, 3) + step
        out = _batch_norms(bns, x, chunks, repeats)  # type: ignore[arg-type]
        parts = x.split([3, 2], dim=1)
        expected = torch.cat(
            [bn(p, chunks=chunks, repeats=repeats) for bn, p in zip(reference, parts)], 1
        )
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    for bn, ref in zip(bns, reference):
        for (name, a), (_, b) in zip(bn.named_buffers(), ref.named_buffers()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_bf16_autocast_option_trains_the_architecture() -> None:
    space = _space()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(space, torch.randn(2, 3, 32, 32))
    loss.backward()
    assert torch.isfinite(loss)
    for p in space.arch_parameters().values():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
