"""Architecture gradients of the DARTS bi-level problem, as pure functions.

The second-order ("unrolled") gradient approximates the gradient of

    L_val(w', α)   with   w' = w − η · d(w),   d(w) = ∇_w L_train(w, α) + λw + μ·m

(one step of momentum SGD with learning rate η, weight decay λ, momentum μ and buffer m) by

    ∇_α L_val(w', α) − η · [∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)] / (2ε)

with w± = w ± ε ∇_{w'} L_val(w', α) and ε = r / ‖∇_{w'} L_val(w', α)‖ (DARTS eq. 7–8, r = 0.01).

The virtual step really moves the weights (in place) and they are restored bit-for-bit
afterwards, together with every buffer given (BatchNorm running statistics).

One sample for every training-loss call: a stochastic space (sampled widths or paths, drop-path)
would otherwise evaluate a different subnetwork at w, w⁺ and w⁻, and the finite difference
(g⁺ − g⁻) / 2ε would divide that sampling noise by a tiny ε. Before each training-loss call the
global RNG and the given buffers (e.g. a sample counter) are rewound to their values at the
start of the call; afterwards the RNG continues from where the validation loss left it.

The first-order architecture step needs ∇_α L_val only: :func:`weights_frozen` turns the weights'
``requires_grad`` off around its forward and backward, so autograd computes no weight gradient
(and no backward at all through parts that hold no architecture parameter, such as a stem) —
the α gradient is the same, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch

LossFn = Callable[[], torch.Tensor]
ReduceFn = Callable[[list[torch.Tensor]], list[torch.Tensor]]


@contextmanager
def weights_frozen(weights: Iterable[torch.Tensor], enabled: bool = True) -> Iterator[None]:
    """Within the block, ``weights`` do not require gradients; their flags are restored after.

    A forward and backward pass run inside computes the gradients of the other leaves (the
    architecture parameters) exactly as it would otherwise, without the weights' gradients.
    Not for a module wrapped in ``DistributedDataParallel``: its reducer expects a gradient for
    every parameter that required one when it was wrapped.

    Args:
        weights: The tensors to freeze (those that do not require gradients are left alone).
        enabled: ``False`` makes the block a no-op.
    """
    frozen = [w for w in weights if w.requires_grad] if enabled else []
    for w in frozen:
        w.requires_grad_(False)
    try:
        yield
    finally:
        for w in frozen:
            w.requires_grad_(True)


def _identity(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return tensors


def _grads(
    loss: torch.Tensor, params: Sequence[torch.Tensor], reduce: ReduceFn
) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    out = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return reduce(out)


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def unrolled_arch_gradient(
    train_loss: LossFn,
    val_loss: LossFn,
    weights: Sequence[torch.nn.Parameter],
    alphas: Sequence[torch.nn.Parameter],
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    momentum_buffers: Sequence[torch.Tensor | None] | None = None,
    buffers: Sequence[torch.Tensor] = (),
    r: float = 0.01,
    reduce: ReduceFn = _identity,
) -> list[torch.Tensor]:
    """Second-order architecture gradient by the finite-difference Hessian-vector product.

    Args:
        train_loss: computes the training loss (trainA batch) at the current parameter values.
        val_loss: computes the validation loss (trainB batch) at the current parameter values.
        weights: the network weights ``w`` (moved in place during the call, then restored).
        alphas: the architecture parameters ``α``.
        lr: the weight learning rate η of the virtual step.
        momentum: the weight optimizer's momentum μ.
        weight_decay: the weight optimizer's weight decay λ.
        momentum_buffers: the optimizer's momentum buffer for each weight (``None`` entries or
            ``None``: no buffer yet, as before the first real step).
        buffers: tensors (e.g. BatchNorm running statistics, a sampling counter) restored after
            the call and rewound before each training-loss call.
        r: the finite-difference radius numerator (ε = r / ‖∇_{w'} L_val‖).
        reduce: applied to every list of gradients before use; under DDP it averages them
            over ranks (``torch.autograd.grad`` is not all-reduced by DDP).

    Returns:
        The gradient for each of ``alphas`` (same order).
    """
    weights = list(weights)
    alphas = list(alphas)
    if momentum_buffers is None:
        momentum_buffers = [None] * len(weights)
    w0 = [w.detach().clone() for w in weights]
    b0 = [b.detach().clone() for b in buffers]
    rng0 = _rng_state()

    def frozen_train_loss() -> torch.Tensor:
        _set_rng_state(rng0)
        with torch.no_grad():
            for b, b_orig in zip(buffers, b0):
                b.copy_(b_orig)
        return train_loss()

    rng_after_val = None
    try:
        # virtual step w' = w - lr * (g + wd * w + momentum * buf)
        g_train = _grads(frozen_train_loss(), weights, reduce)
        with torch.no_grad():
            for w, g, buf in zip(weights, g_train, momentum_buffers):
                step = g + weight_decay * w
                if momentum and buf is not None:
                    step = step + momentum * buf
                w.sub_(lr * step)
        # gradient of the validation loss at w'
        g_val = _grads(val_loss(), alphas + weights, reduce)
        rng_after_val = _rng_state()
        d_alpha, d_w = g_val[: len(alphas)], g_val[len(alphas) :]
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in d_w))
        if float(norm) == 0.0:
            return d_alpha
        eps = r / float(norm)
        # finite-difference Hessian-vector product around the original w
        with torch.no_grad():
            for w, w_orig, v in zip(weights, w0, d_w):
                w.copy_(w_orig).add_(v, alpha=eps)
        g_plus = _grads(frozen_train_loss(), alphas, reduce)
        with torch.no_grad():
            for w, w_orig, v in zip(weights, w0, d_w):
                w.copy_(w_orig).sub_(v, alpha=eps)
        g_minus = _grads(frozen_train_loss(), alphas, reduce)
        return [da - lr * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, g_plus, g_minus)]
    finally:
        with torch.no_grad():
            for w, w_orig in zip(weights, w0):
                w.copy_(w_orig)
            for b, b_orig in zip(buffers, b0):
                b.copy_(b_orig)
        if rng_after_val is not None:
            _set_rng_state(rng_after_val)
