"""Second-order architecture gradient against the exact bilevel gradient (double backward)."""

import pytest
import torch

from lightning_nas.bilevel import unrolled_arch_gradient


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    d_in, d_h, n = 5, 7, 16
    w1 = torch.nn.Parameter(torch.randn(d_h, d_in, generator=g, dtype=torch.float64) * 0.5)
    w2 = torch.nn.Parameter(torch.randn(3, d_h, generator=g, dtype=torch.float64) * 0.5)
    alpha = torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
    xa, xb = (torch.randn(n, d_in, generator=g, dtype=torch.float64) for _ in range(2))
    ya, yb = (torch.randint(0, 3, (n,), generator=g) for _ in range(2))

    def forward(x, w1_, w2_, a):
        h = x @ w1_.t()
        mix = torch.softmax(a, 0)
        h = mix[0] * torch.tanh(h) + mix[1] * torch.relu(h) + mix[2] * h
        return h @ w2_.t()

    def loss(x, y, w1_, w2_, a):
        return torch.nn.functional.cross_entropy(forward(x, w1_, w2_, a), y)

    return (w1, w2), alpha, (xa, ya), (xb, yb), loss


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 3e-4)])
def test_unrolled_matches_exact_bilevel_gradient(momentum, wd):
    (w1, w2), alpha, (xa, ya), (xb, yb), loss = _problem()
    lr = 0.1
    torch.manual_seed(0)
    bufs = [torch.randn_like(w1) * 0.1, torch.randn_like(w2) * 0.1] if momentum else None

    # exact: d/dα L_val(w - lr * (∇w L_train + wd w + μ m), α), differentiating through the step
    lt = loss(xa, ya, w1, w2, alpha)
    g1, g2 = torch.autograd.grad(lt, (w1, w2), create_graph=True)
    s1, s2 = g1 + wd * w1, g2 + wd * w2
    if momentum:
        s1, s2 = s1 + momentum * bufs[0], s2 + momentum * bufs[1]
    exact = torch.autograd.grad(loss(xb, yb, w1 - lr * s1, w2 - lr * s2, alpha), alpha)[0]

    approx = unrolled_arch_gradient(
        lambda: loss(xa, ya, w1, w2, alpha),
        lambda: loss(xb, yb, w1, w2, alpha),
        [w1, w2],
        [alpha],
        lr=lr,
        momentum=momentum,
        weight_decay=wd,
        momentum_buffers=bufs,
    )[0]
    first_order = torch.autograd.grad(loss(xb, yb, w1, w2, alpha), alpha)[0]
    # the second-order term matters on this problem, and the finite difference recovers it
    assert (exact - first_order).abs().max() > 1e-3
    torch.testing.assert_close(approx, exact, rtol=1e-4, atol=1e-6)


def test_virtual_step_moves_weights_and_restores_them():
    (w1, w2), alpha, (xa, ya), (xb, yb), loss = _problem(1)
    w1_0, w2_0 = w1.detach().clone(), w2.detach().clone()
    lr, wd = 0.5, 0.01
    g1, g2 = torch.autograd.grad(loss(xa, ya, w1, w2, alpha), (w1, w2))
    seen = {}
    buffer = torch.arange(3.0)

    def val_loss():
        seen["w1"], seen["w2"] = w1.detach().clone(), w2.detach().clone()
        buffer.add_(1.0)  # e.g. BatchNorm running statistics updated by the forward
        return loss(xb, yb, w1, w2, alpha)

    unrolled_arch_gradient(
        lambda: loss(xa, ya, w1, w2, alpha),
        val_loss,
        [w1, w2],
        [alpha],
        lr=lr,
        weight_decay=wd,
        buffers=[buffer],
    )
    torch.testing.assert_close(seen["w1"], w1_0 - lr * (g1 + wd * w1_0))
    torch.testing.assert_close(seen["w2"], w2_0 - lr * (g2 + wd * w2_0))
    assert not torch.equal(seen["w1"], w1_0)
    assert torch.equal(w1.detach(), w1_0) and torch.equal(w2.detach(), w2_0)
    assert torch.equal(buffer, torch.arange(3.0))
