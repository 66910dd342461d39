"""Second-order search over a stochastic space: one frozen sample per unrolled step.

FasterSeg draws Gumbel widths on every forward. The finite-difference Hessian-vector product of
the unrolled gradient, ``(g⁺ − g⁻) / 2ε``, is only meaningful if ``g⁺`` and ``g⁻`` are gradients
of the same subnetwork; otherwise the sampling noise is divided by a tiny ε. Before the fix each
call of the training-loss closure drew new widths (a different loss at the same weights).
"""

import lightning.pytorch as pl
import pytest
import torch

import lightning_nas.search as search_mod
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods.fasterseg.space import FasterSegSpace
from lightning_nas.search import SearchModule

pytestmark = pytest.mark.slow


def _fit(tmp_path, wrapper, holder) -> SearchModule:
    torch.manual_seed(0)
    space = FasterSegSpace(num_classes=6, layers=8, Fch=4, widths=(6, 12), ohem_thresh=None)
    holder["space"] = space
    module = SearchModule(
        space,
        weight_optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05}},
        unrolled=True,
    )
    # 64 px: the 1/32 maps are 2×2, so BatchNorm never normalises over two values only
    data = SyntheticDataModule(
        root=str(tmp_path / "data"),
        num_train=8,
        num_val=4,
        image_size=64,
        search=True,
        batch_size=4,
    )
    original = search_mod.unrolled_arch_gradient
    search_mod.unrolled_arch_gradient = wrapper(original)
    try:
        pl.Trainer(
            default_root_dir=tmp_path,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            max_steps=2,
            limit_val_batches=0,
        ).fit(module, data)
    finally:
        search_mod.unrolled_arch_gradient = original
    return module


def test_every_training_loss_call_sees_the_same_sample(tmp_path) -> None:
    seen = []

    def wrapper(original):
        def call(train_loss, val_loss, *args, **kwargs):
            space = holder["space"]
            draws = {"train": [], "val_end": None}

            def spy_train():
                # the sample this call will draw: the space's counter and the global RNG
                draws["train"].append((int(space.sample_step), torch.get_rng_state().clone()))
                return train_loss()

            def spy_val():
                loss = val_loss()
                draws["val_end"] = torch.get_rng_state().clone()
                return loss

            out = original(spy_train, spy_val, *args, **kwargs)
            draws["after"] = torch.get_rng_state().clone()
            seen.append(draws)
            return out

        return call

    holder = {}
    _fit(tmp_path, wrapper, holder)
    assert seen
    for draws in seen:
        (step0, rng0), *rest = draws["train"]
        assert len(rest) == 2  # w, w⁺, w⁻: one Gumbel sample and one RNG state for all three
        for step, rng in rest:
            assert step == step0 and torch.equal(rng, rng0)
        # afterwards the RNG goes on from the validation loss, not from a rewound state
        assert torch.equal(draws["after"], draws["val_end"])


def test_noise_is_frozen_across_training_calls_and_the_rng_moves_on() -> None:
    """A toy loss with global-RNG noise: one draw for the three training-loss calls."""
    from lightning_nas.bilevel import unrolled_arch_gradient

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    a = torch.nn.Parameter(torch.tensor([0.5, 0.3]))
    noise, val_end = [], {}

    def train_loss():
        u = torch.rand(2)
        noise.append(u)
        return (w * a * u).sum() + (w**2).sum()

    def val_loss():
        loss = (w * a * torch.rand(2)).sum() + (w * a).pow(2).sum()
        val_end["rng"] = torch.get_rng_state().clone()
        return loss

    torch.manual_seed(0)
    grads = unrolled_arch_gradient(train_loss, val_loss, [w], [a], lr=0.1)
    assert len(noise) == 3 and all(torch.equal(u, noise[0]) for u in noise)
    assert torch.equal(torch.get_rng_state(), val_end["rng"])
    # with one noise draw u the loss is bilinear in (w, a): the finite difference is exact
    u = noise[0]
    d_w = a * u + 2 * w  # ∇_w L_train
    w1 = w.detach() - 0.1 * d_w.detach()
    torch.manual_seed(0)
    torch.rand(2)  # the training draw
    v = torch.rand(2)  # the validation draw
    g_val_w = (a * v + 2 * w1 * a**2).detach()
    g_val_a = (w1 * v + 2 * a * w1**2).detach()
    expected = g_val_a - 0.1 * u * g_val_w  # ∂²L_train/∂a∂w = diag(u)
    assert torch.allclose(grads[0], expected, atol=1e-5), (grads[0], expected)
