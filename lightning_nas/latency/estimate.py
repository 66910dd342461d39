"""A derived network's table estimate, and the statistics that say how good it is.

The op-by-op sum of a space's ``derived_latency`` covers every module the network runs (stem,
cells, resampling between branches or levels, head, final upsampling: each a table entry). What
no op entry holds is the cost of calling the network itself, once per network: the
``network_call`` block (:func:`network_call_config`), measured like any entry.
:func:`network_estimate` adds it.

The statistics (:func:`pearson`, :func:`spearman`, :func:`bootstrap_interval`, :func:`fit_line`)
are plain Python, for ``benchmarks/latency_correlation.py`` and its tests.

Example:
    >>> pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]) > 0.98
    True
    >>> fit_line([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])
    (2.0, 1.0)
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.protocols import DerivedLatency
from lightning_nas.latency.table import LatencyTable

__all__ = [
    "bootstrap_interval",
    "fit_line",
    "network_call_config",
    "network_estimate",
    "pearson",
    "ranks",
    "spearman",
]


def network_call_config(input_size: tuple[int, int], in_channels: int = 3) -> OpConfig:
    """The ``network_call`` entry of networks taking ``in_channels × H × W`` images.

    Example:
        >>> network_call_config((64, 32)).key
        'network_call|Cin=3|Cout=3|H=64|W=32|stride=1'
    """
    return OpConfig("network_call", in_channels, in_channels, *input_size)


def network_estimate(
    space: DerivedLatency,
    table: LatencyTable,
    genotype: Any = None,
    in_channels: int = 3,
) -> float:
    """Table estimate (ms) of a derived network, called once: ``derived_latency`` + the call.

    Args:
        space: A space with ``derived_latency`` (every op, resampling and head entry).
        table: A table holding those entries and :func:`network_call_config` at its input size.
        genotype: The genotype (default: the space's current derivation).
        in_channels: Image channels of the network input.

    Raises:
        MissingLatencyError: If the table lacks an entry.
    """
    ops = float(space.derived_latency(table, genotype))
    return ops + table[network_call_config(table.input_size, in_channels)]


# ----------------------------------------------------------------------------- statistics
def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of ``x`` and ``y`` (``nan`` when either is constant).

    Raises:
        ValueError: If the lengths differ or there are fewer than two points.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"pearson: need equal lengths >= 2, got {len(x)} and {len(y)}")
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return float("nan")
    return sxy / (sxx * syy) ** 0.5


def ranks(x: Sequence[float]) -> list[float]:
    """Ranks from 0, ties given their mean rank.

    Example:
        >>> ranks([3.0, 1.0, 3.0, 2.0])
        [2.5, 0.0, 2.5, 1.0]
    """
    order = sorted(range(len(x)), key=x.__getitem__)
    out = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks."""
    return pearson(ranks(x), ranks(y))


def bootstrap_interval(
    x: Sequence[float],
    y: Sequence[float],
    statistic: Callable[[Sequence[float], Sequence[float]], float] = pearson,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)``, resampling the pairs.

    Each resample draws ``len(x)`` indices with replacement (``random.Random(seed)``); resamples
    where the statistic is undefined (``nan``: all points equal) are dropped. The interval is
    the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the rest
    (``statistics.quantiles``, inclusive method).

    Raises:
        ValueError: On bad arguments or when no resample gives a defined statistic.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("bootstrap_interval: need two equal-length sequences of >= 2 points")
    if resamples < 2 or not 0 < confidence < 1:
        raise ValueError("bootstrap_interval: need resamples >= 2 and 0 < confidence < 1")
    rng = random.Random(seed)
    n = len(x)
    values = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        value = statistic([x[i] for i in idx], [y[i] for i in idx])
        if value == value:  # not nan
            values.append(value)
    if len(values) < 2:
        raise ValueError("bootstrap_interval: the statistic is undefined on every resample")
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    lo = round((1 - confidence) / 2 * 1000)
    hi = round((1 + confidence) / 2 * 1000)
    return cuts[lo - 1], cuts[hi - 1]


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``y ≈ slope · x + intercept``."""
    slope, intercept = statistics.linear_regression(x, y)
    return slope, intercept
