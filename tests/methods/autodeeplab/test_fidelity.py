"""Auto-DeepLab supernet against written-out references (review findings F9 and F13).

F9: eq. (6) and the public port (``cell_level_search.py``: ``for states in all_states``) run a
node's cell once per incoming transition, so in training mode every BatchNorm of the cell uses
the statistics of that transition's batch alone. The supernet runs the transitions as one batch;
these tests hold it to a loop over transitions written out here: outputs, gradients, running
statistics (and the eval-mode outputs they give).

F13: the 2s → s resample upsamples first, then ReLU → 1×1 conv → BN (the release and the port).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.methods.autodeeplab.space import _BatchNorm, _Node, _Resample
from lightning_nas.spaces import AutoDeepLabSpace


def _node_inputs(node_key: str, partial_channels: int) -> tuple[_Node, tuple]:
    """A node of a tiny supernet and the arguments the supernet's forward gives it."""
    torch.manual_seed(0)
    space = AutoDeepLabSpace(
        num_classes=3, layers=3, filter_multiplier=2, blocks=3, partial_channels=partial_channels
    )
    node = space.nodes[node_key]
    assert isinstance(node, _Node)
    captured: dict[str, tuple] = {}
    handle = node.register_forward_pre_hook(lambda m, args: captured.setdefault("args", args))
    with torch.no_grad():
        space(torch.randn(2, 3, 48, 48))
    handle.remove()
    prevs, prev_prev, per_state, betas, size = captured["args"]
    # inputs with clearly different statistics per transition
    prevs = [(1.0 + 2.0 * d) * h.detach() + d for d, h in enumerate(prevs)]
    prev_prev = None if prev_prev is None else prev_prev.detach()
    per_state = [w.detach() for w in per_state]
    betas = torch.softmax(torch.randn(len(prevs)), 0)
    return copy.deepcopy(node).train(), (prevs, prev_prev, per_state, betas, size)


def _cell_on_one_transition(
    node: _Node,
    d: int,
    h: torch.Tensor,
    prev_prev: torch.Tensor | None,
    weights: list[torch.Tensor],
    size: tuple[int, int],
) -> torch.Tensor:
    """The node's cell on transition ``d`` alone (batch N), every module called plainly."""
    mixed, rest = node._split(node.preprocess[d](h, size))
    acc = node.edges[0](mixed, weights[1])  # (N, B, C/K, H, W): a slot per block
    if node.preprocess_pp is not None and node.edges_pp is not None and prev_prev is not None:
        mixed_pp, bypass = node._split(node.preprocess_pp(prev_prev, size))
        acc = acc + node.edges_pp(mixed_pp, weights[0])
        if rest is not None and bypass is not None:
            rest = rest + bypass
    blocks = []
    for b in range(node.blocks):
        block = node._block(acc[:, 0], rest)
        blocks.append(block)
        if b + 1 < node.blocks:
            mixed, bypass = node._split(block)
            acc = acc[:, 1:] + node.edges[b + 1](mixed, weights[b + 2])
            rest = None if rest is None or bypass is None else rest + bypass
    return torch.cat(blocks, dim=1)


def _per_transition_reference(node: _Node, args: tuple) -> torch.Tensor:
    """Eq. (6) as a loop: Σ_d β_d · Cell(transition d), one transition after the other."""
    prevs, prev_prev, weights, betas, size = args
    out = torch.zeros(())
    for d, h in enumerate(prevs):
        out = out + betas[d] * _cell_on_one_transition(node, d, h, prev_prev, weights, size)
    return out


def _leaf_args(args: tuple) -> tuple:
    prevs, prev_prev, weights, betas, size = args
    prevs = [h.clone().requires_grad_() for h in prevs]
    weights = [w.clone().requires_grad_() for w in weights]
    return prevs, prev_prev, weights, betas.clone().requires_grad_(), size


def _set_momentum(node: _Node, momentum: float | None) -> None:
    for m in node.modules():
        if isinstance(m, _BatchNorm):
            m.momentum = momentum


@pytest.mark.parametrize("partial_channels", [1, 2])
@pytest.mark.parametrize("node_key", ["1_1", "2_1"])  # 2 sources, no h[l-2]; 3 sources, h[l-2]
def test_node_equals_the_cell_run_per_transition(node_key, partial_channels):
    node, args = _node_inputs(node_key, partial_channels)
    assert len(args[0]) == (2 if node_key == "1_1" else 3)
    assert (args[1] is None) == (node_key == "1_1")
    reference = copy.deepcopy(node)
    a, b = _leaf_args(args), _leaf_args(args)
    out = node(*a)
    expected = _per_transition_reference(reference, b)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)

    # the same gradients for the inputs, α weights, β and every weight of the cell
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (expected * g).sum().backward()
    for x, y in zip([*a[0], *a[2], a[3]], [*b[0], *b[2], b[3]]):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6)
    for (name, p), (_, q) in zip(node.named_parameters(), reference.named_parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("node_key", ["1_1", "2_1"])
def test_running_statistics_as_the_per_transition_loop(node_key, momentum):
    """Running statistics after training forwards, and the eval-mode outputs they give."""
    node, args = _node_inputs(node_key, 1)
    _set_momentum(node, momentum)
    reference = copy.deepcopy(node)
    with torch.no_grad():
        for scale in (1.0, 0.5):  # two steps: the second update starts from non-trivial values
            prevs, prev_prev, weights, betas, size = args
            step = ([scale * h for h in prevs], prev_prev, weights, betas, size)
            node(*step)
            _per_transition_reference(reference, step)
    for (name, x), (_, y) in zip(node.named_buffers(), reference.named_buffers()):
        if name.endswith("num_batches_tracked"):
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)
    node.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            node(*args), _per_transition_reference(reference, args), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_chunks_and_repeats_equal_separate_calls(affine, momentum):
    torch.manual_seed(0)
    C, N, D = 3, 2, 3
    bn = _BatchNorm(C, affine=affine, momentum=momentum)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    reference = copy.deepcopy(bn)
    inputs = [(1.0 + d) * torch.randn(N, C, 5, 4) + d for d in range(D)]
    stacked = torch.stack(inputs, dim=1).flatten(0, 1)  # sample n of input d at n·D + d
    out = bn(stacked, chunks=D).view(N, D, C, 5, 4)
    for d, x in enumerate(inputs):
        torch.testing.assert_close(out[:, d], reference(x))
    # `repeats`: the statistics of R calls on the same input, one normalisation
    out = bn(inputs[0], repeats=D)
    for _ in range(D):
        expected = reference(inputs[0])
    torch.testing.assert_close(out, expected)
    for (name, x), (_, y) in zip(bn.named_buffers(), reference.named_buffers()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=name)
    assert int(bn.num_batches_tracked) == 2 * D


@pytest.mark.parametrize("size", [(8, 6), (7, 5)])
def test_upsampling_resample_resizes_first(size):
    """2s → s: bilinear upsampling, then ReLU → 1×1 conv → BN (the release and the port)."""
    torch.manual_seed(0)
    resample = _Resample(6, 4, direction=-1).train()
    x = torch.randn(2, 6, 4, 3)
    out = resample(x, size)
    up = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    expected = F.batch_norm(
        F.conv2d(F.relu(up), resample.conv.weight), None, None, training=True, eps=resample.bn.eps
    )
    torch.testing.assert_close(out, expected)
