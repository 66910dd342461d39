"""Second-order architecture gradient against the exact bilevel gradient (double backward)."""

import pytest
import torch

from lightning_nas.bilevel import unrolled_arch_gradient, weights_frozen


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


def _tiny_spaces():
    from lightning_nas.spaces import AutoDeepLabSpace, DartsSpace, FasterSegSpace

    return {
        "darts": lambda: DartsSpace(num_classes=3, C=4, layers=3, steps=2, multiplier=2),
        "autodeeplab": lambda: AutoDeepLabSpace(num_classes=3, layers=3, filter_multiplier=2),
        "fasterseg": lambda: FasterSegSpace(num_classes=3, layers=8, Fch=1, widths=(6, 12)),
    }


@pytest.mark.parametrize(
    "name,fused",
    [("darts", None), ("autodeeplab", False), ("autodeeplab", True), ("fasterseg", None)],
)
def test_frozen_weights_give_the_same_arch_gradient_and_no_weight_gradient(
    name, fused, monkeypatch
):
    # Auto-DeepLab's fused cell kernels (the default) sum in another order when their weights
    # need no gradient: the same gradient up to float32 rounding; its previous kernels: exact
    import lightning_nas.methods.autodeeplab.space as adl

    if fused is not None:
        monkeypatch.setattr(adl, "_FUSED_KERNELS", fused)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    space = _tiny_spaces()[name]().train()
    space.set_phase("arch")
    alphas = list(space.arch_parameters().values())
    weights = list(space.weight_parameters())
    state = {k: v.clone() for k, v in space.state_dict().items()}

    def arch_grads(frozen):
        space.load_state_dict(state)  # BatchNorm statistics as before
        for p in [*alphas, *weights]:
            p.grad = None
        torch.manual_seed(5)  # the same sampled subnetwork (FasterSeg)
        with weights_frozen(weights, enabled=frozen):
            space.search_loss(space(x), y, 255).backward()
        return [a.grad.clone() for a in alphas], [w.grad for w in weights]

    expected, weight_grads = arch_grads(False)
    got, frozen_weight_grads = arch_grads(True)
    assert any(g is not None for g in weight_grads)
    assert all(g is None for g in frozen_weight_grads)  # none computed
    assert all(w.requires_grad for w in weights)  # flags restored
    for a, b in zip(expected, got):
        if fused:
            assert float((a - b).abs().max()) <= 5e-4 * float(a.abs().max())
        else:
            assert torch.equal(a, b)


def test_weights_frozen_leaves_frozen_tensors_frozen():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2)
    with weights_frozen([a, b]):
        assert not a.requires_grad and not b.requires_grad
    assert a.requires_grad and not b.requires_grad
    with weights_frozen([a], enabled=False):
        assert a.requires_grad


@pytest.mark.filterwarnings("ignore")
def test_search_module_freezes_the_weights_in_the_first_order_arch_pass(tmp_path, synthetic_root):
    import lightning.pytorch as pl

    from lightning_nas.data import SyntheticDataModule
    from lightning_nas.loss_terms import LossTerm
    from lightning_nas.search import SearchModule

    class Spy(LossTerm):
        """Records, in each phase, whether the weights require gradients."""

        def __init__(self):
            self.seen = []

        def arch_loss(self, module, logits, batch):
            self.seen.append(("arch", any(w.requires_grad for w in module.weight_parameters())))
            return None

        def weight_loss(self, module, logits, batch):
            self.seen.append(("weight", all(w.requires_grad for w in module.weight_parameters())))
            return None

    def fit(freeze):
        from lightning_nas.spaces import DartsSpace

        torch.manual_seed(0)
        space = DartsSpace(num_classes=6, C=4, layers=3, steps=2, multiplier=2)
        module = SearchModule(space, weight_lr_scheduler=None, epoch_seed=3)
        module.freeze_weights_in_arch_pass = freeze
        spy = Spy()
        data = SyntheticDataModule(
            root=synthetic_root, num_train=16, num_val=8, image_size=32, search=True,
            batch_size=4,
        )  # fmt: skip
        pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[spy],
            default_root_dir=tmp_path,
        ).fit(module, data)  # fmt: skip
        return module, spy.seen

    frozen, seen = fit(True)
    assert seen == [("arch", False), ("weight", True)] * 2
    unfrozen, seen = fit(False)
    assert seen == [("arch", True), ("weight", True)] * 2
    for a, b in zip(frozen.space.state_dict().values(), unfrozen.space.state_dict().values()):
        assert torch.equal(a, b)  # DARTS' kernels: the same step, bit for bit
