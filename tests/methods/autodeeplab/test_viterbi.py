"""Viterbi decoding of the Auto-DeepLab lattice against brute-force enumeration."""

import math

import pytest
import torch

from lightning_nas.methods.autodeeplab.viterbi import (
    brute_force_path,
    path_log_probability,
    viterbi_path,
)


def log_transitions(logits: torch.Tensor) -> torch.Tensor:
    """Log softmax over the existing outgoing transitions of each node (as the space does)."""
    n = logits.shape[1]
    mask = torch.tensor([[0 <= j + d - 1 < n for d in range(3)] for j in range(n)])
    return torch.log_softmax(logits.double().masked_fill(~mask, -math.inf), dim=-1)


def greedy_path(lattice: torch.Tensor, start: int = 0) -> list[int]:
    path, level = [], start
    for layer in lattice:
        moves = [(float(layer[level][d]), level + d - 1) for d in range(3)]
        moves = [(p, j) for p, j in moves if 0 <= j < lattice.shape[1]]
        level = max(moves, key=lambda m: m[0])[1]
        path.append(level)
    return path


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
@pytest.mark.parametrize("layers", [1, 2, 3, 4, 5, 6])
def test_viterbi_equals_brute_force_on_random_betas(layers, levels):
    gen = torch.Generator().manual_seed(100 * layers + levels)
    for _ in range(20):
        lattice = log_transitions(2.0 * torch.randn(layers, levels, 3, generator=gen))
        best = viterbi_path(lattice)
        assert best == brute_force_path(lattice)
        assert len(best) == layers and best[0] in (0, 1)
        assert all(abs(b - a) <= 1 for a, b in zip([0, *best], best))
        score = path_log_probability(lattice, best)
        assert math.isfinite(score) and score <= 0.0


@pytest.mark.parametrize("start", [0, 1, 2])
def test_start_level(start):
    gen = torch.Generator().manual_seed(start)
    for _ in range(10):
        lattice = log_transitions(torch.randn(5, 3, 3, generator=gen))
        best = viterbi_path(lattice, start_level=start)
        assert best == brute_force_path(lattice, start_level=start)
        assert abs(best[0] - start) <= 1


@pytest.mark.parametrize("layers,levels", [(2, 2), (4, 3), (6, 4), (5, 4)])
def test_ties_are_broken_identically(layers, levels):
    # integer log-probabilities: many paths share exactly the same score
    gen = torch.Generator().manual_seed(layers * levels)
    for _ in range(30):
        lattice = torch.randint(-2, 1, (layers, levels, 3), generator=gen).double()
        assert viterbi_path(lattice) == brute_force_path(lattice)


def test_all_ties_give_the_lexicographically_smallest_path():
    lattice = torch.zeros(6, 4, 3, dtype=torch.float64)
    assert viterbi_path(lattice) == [0] * 6 == brute_force_path(lattice)
    # a uniform β: boundary nodes have 2 transitions (log 1/2), inner nodes 3 (log 1/3), so the
    # most probable path stays on the boundary level 0
    uniform = log_transitions(torch.zeros(6, 4, 3))
    assert viterbi_path(uniform) == [0] * 6 == brute_force_path(uniform)


def test_viterbi_is_not_greedy():
    p = torch.full((3, 3, 3), 1e-9, dtype=torch.float64)
    p[0, 0, 1], p[0, 0, 2] = 0.4, 0.6  # the stem prefers level 1 ...
    p[1, 0, 1] = p[2, 0, 1] = 1.0  # ... but level 0 then stays certain
    p[1, 1, :] = p[2, 1, :] = 1 / 3  # level 1 spreads out
    p[2, 2, :] = 0.5
    lattice = p.log()
    assert greedy_path(lattice)[0] == 1
    assert viterbi_path(lattice) == [0, 0, 0] == brute_force_path(lattice)
    assert path_log_probability(lattice, [0, 0, 0]) == pytest.approx(math.log(0.4))


def test_transitions_outside_the_lattice_are_ignored():
    lattice = torch.full((3, 2, 3), math.log(0.5), dtype=torch.float64)
    lattice[:, 0, 0] = 100.0  # level 0 -> level -1 does not exist
    lattice[:, 1, 2] = 100.0  # level 1 -> level 2 does not exist
    lattice[1, 0, 2] = math.log(0.9)
    assert viterbi_path(lattice) == brute_force_path(lattice) == [0, 1, 0]


def test_forbidden_transitions():
    lattice = torch.zeros(3, 3, 3, dtype=torch.float64)
    lattice[0, 0, 1] = -math.inf  # the first layer must go to level 1
    assert viterbi_path(lattice)[0] == 1 == brute_force_path(lattice)[0]
    assert path_log_probability(lattice, [0, 0, 0]) == -math.inf
    lattice[0, 0, 2] = -math.inf
    with pytest.raises(ValueError, match="probability 0"):
        viterbi_path(lattice)
    with pytest.raises(ValueError, match="probability 0"):
        brute_force_path(lattice)


def test_accepts_nested_lists():
    lattice = log_transitions(torch.randn(4, 3, 3)).tolist()
    assert viterbi_path(lattice) == brute_force_path(lattice)


@pytest.mark.parametrize(
    "bad,message",
    [
        ([], "at least one layer"),
        ([[[0.0, 0.0]]], "shape"),
        ([[[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]], "shape"),
        ([[[0.0, math.nan, 0.0]]], "NaN"),
    ],
)
def test_malformed_lattices(bad, message):
    with pytest.raises(ValueError, match=message):
        viterbi_path(bad)


def test_bad_start_and_path():
    lattice = torch.zeros(2, 2, 3)
    with pytest.raises(ValueError, match="start_level"):
        viterbi_path(lattice, start_level=2)
    with pytest.raises(ValueError, match="expected 2 levels"):
        path_log_probability(lattice, [0])
    with pytest.raises(ValueError, match="not a move"):
        path_log_probability(lattice, [0, 2])
