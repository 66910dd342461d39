"""Maximum-probability path through a layer × level lattice (Auto-DeepLab's network decoding).

Pure functions, no torch: the lattice is given as log transition probabilities
``transition_logprobs[l][i][d]`` = log P(level at layer ``l`` is ``i + d - 1`` | level at layer
``l - 1`` is ``i``), with ``d`` = 0 (to the finer level ``i - 1``), 1 (same level), 2 (to the
coarser level ``i + 1``). Layer ``-1`` is the start node (the stem) at ``start_level``. Any entry
``[l][i][d]`` whose target level ``i + d - 1`` lies outside ``0 .. n_levels - 1`` is ignored,
whatever its value, so the boundary levels have two transitions and nothing wraps round. Entries
of ``-inf`` forbid a transition.

The score of a path ``p_0 .. p_{L-1}`` is the sum of its ``L`` log transition probabilities,
always added right to left (``t_0 + (t_1 + (... + (t_{L-1} + 0)))``), in Python floats. Both
:func:`viterbi_path` and :func:`brute_force_path` add in exactly that order, so equal scores are
recognised exactly and ties are broken the same way: among the maximum-score paths the
lexicographically smallest level sequence wins (stay at the finer level as early as possible).

Example:
    >>> import math
    >>> lattice = [
    ...     [[-math.inf, math.log(0.3), math.log(0.7)], [0.0, 0.0, 0.0]],  # from the stem (level 0)
    ...     [[-math.inf, math.log(0.9), math.log(0.1)], [math.log(0.2), math.log(0.8), -math.inf]],
    ... ]
    >>> viterbi_path(lattice)
    [1, 1]
    >>> brute_force_path(lattice)
    [1, 1]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["brute_force_path", "path_log_probability", "viterbi_path"]

_NEG_INF = -math.inf


def _as_lattice(transition_logprobs: Any, start_level: int) -> list[list[list[float]]]:
    rows = (
        transition_logprobs.tolist()
        if hasattr(transition_logprobs, "tolist")
        else transition_logprobs
    )
    lattice = [[[float(v) for v in node] for node in layer] for layer in rows]
    if not lattice:
        raise ValueError("transition_logprobs: expected at least one layer, got none")
    n = len(lattice[0])
    if n == 0:
        raise ValueError("transition_logprobs: expected at least one level, got none")
    for index, layer in enumerate(lattice):
        if len(layer) != n or any(len(node) != 3 for node in layer):
            raise ValueError(
                f"transition_logprobs[{index}]: expected shape ({n}, 3) like layer 0 "
                "(levels × [to finer, same, to coarser])"
            )
        if any(math.isnan(v) for node in layer for v in node):
            raise ValueError(f"transition_logprobs[{index}]: contains NaN")
    if isinstance(start_level, bool) or not isinstance(start_level, int):
        raise ValueError(f"start_level: expected an integer, got {start_level!r}")
    if not 0 <= start_level < n:
        raise ValueError(f"start_level: expected 0 <= start_level < {n}, got {start_level}")
    return lattice


def _moves(level: int, n: int) -> list[tuple[int, int]]:
    """``(d, target level)`` of the transitions leaving ``level``, by increasing target."""
    return [(d, level + d - 1) for d in range(3) if 0 <= level + d - 1 < n]


def path_log_probability(
    transition_logprobs: Sequence[Sequence[Sequence[float]]] | Any,
    path: Sequence[int],
    start_level: int = 0,
) -> float:
    """Log probability (score) of ``path``, summed right to left.

    Args:
        transition_logprobs: ``(L, n_levels, 3)`` log transition probabilities (nested
            sequences, or anything with ``tolist()`` such as a tensor or an array).
        path: One level per layer.
        start_level: Level of the start node (layer ``-1``).

    Returns:
        The score, ``-inf`` for a path that uses a forbidden transition.

    Raises:
        ValueError: If the lattice is malformed, or ``path`` has the wrong length or a jump of
            more than one level (or leaves the lattice).
    """
    lattice = _as_lattice(transition_logprobs, start_level)
    n = len(lattice[0])
    if len(path) != len(lattice):
        raise ValueError(f"path: expected {len(lattice)} levels, got {len(path)}")
    previous = [start_level, *path[:-1]]
    score = 0.0
    for t in reversed(range(len(lattice))):
        d = path[t] - previous[t] + 1
        if not 0 <= path[t] < n or d not in (0, 1, 2):
            raise ValueError(f"path[{t}]: level {path[t]} after {previous[t]} is not a move")
        score = lattice[t][previous[t]][d] + score
    return score


def viterbi_path(
    transition_logprobs: Sequence[Sequence[Sequence[float]]] | Any, start_level: int = 0
) -> list[int]:
    """The maximum-probability path through the lattice, by dynamic programming.

    Best-to-go scores are computed from the last layer backwards, then the path is read forwards,
    taking at every layer the lowest level that reaches the optimum: this yields the
    lexicographically smallest of the maximum-score paths (see the module docstring). Cost
    ``O(L · n_levels)``.

    Args:
        transition_logprobs: ``(L, n_levels, 3)`` log transition probabilities.
        start_level: Level of the start node (layer ``-1``).

    Returns:
        One level per layer.

    Raises:
        ValueError: If the lattice is malformed or every path has probability 0.
    """
    lattice = _as_lattice(transition_logprobs, start_level)
    n_layers, n = len(lattice), len(lattice[0])
    # to_go[l][i]: best score of layers l+1 .. L-1 given level i at layer l
    to_go = [[0.0] * n for _ in range(n_layers)]
    for t in range(n_layers - 1, 0, -1):
        for i in range(n):
            to_go[t - 1][i] = max(lattice[t][i][d] + to_go[t][j] for d, j in _moves(i, n))
    path: list[int] = []
    level = start_level
    best = _NEG_INF
    for t in range(n_layers):
        candidates = [(lattice[t][level][d] + to_go[t][j], j) for d, j in _moves(level, n)]
        best = max(score for score, _ in candidates)
        level = next(j for score, j in candidates if score == best)
        path.append(level)
        if best == _NEG_INF:
            break
    if best == _NEG_INF:
        raise ValueError("transition_logprobs: every path has probability 0 (-inf score)")
    return path


def brute_force_path(
    transition_logprobs: Sequence[Sequence[Sequence[float]]] | Any, start_level: int = 0
) -> list[int]:
    """The maximum-probability path by enumerating every path (a reference for tests).

    Paths are enumerated in lexicographic order and only a strictly better score replaces the
    best so far, so ties go to the lexicographically smallest path, as in :func:`viterbi_path`.
    Cost ``O(n_levels^L)``: for small lattices only.

    Args:
        transition_logprobs: ``(L, n_levels, 3)`` log transition probabilities.
        start_level: Level of the start node (layer ``-1``).

    Returns:
        One level per layer.

    Raises:
        ValueError: If the lattice is malformed or every path has probability 0.
    """
    lattice = _as_lattice(transition_logprobs, start_level)
    n_layers, n = len(lattice), len(lattice[0])
    best_path: list[int] | None = None
    best = _NEG_INF
    for candidate in itertools.product(range(n), repeat=n_layers):
        previous = (start_level, *candidate[:-1])
        if any(abs(b - a) > 1 for a, b in zip(previous, candidate)):
            continue
        score = 0.0
        for t in reversed(range(n_layers)):
            score = lattice[t][previous[t]][candidate[t] - previous[t] + 1] + score
        if score > best:
            best, best_path = score, list(candidate)
    if best_path is None:
        raise ValueError("transition_logprobs: every path has probability 0 (-inf score)")
    return best_path
