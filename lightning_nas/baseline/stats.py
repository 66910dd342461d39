"""The searched-versus-random comparison in numbers: percentile, mean ± std, verdict.

Torch-free: the arithmetic behind ``lightning-nas baseline``'s table, JSON and plot.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["Comparison", "compare", "percentile_of", "verdict"]


def percentile_of(value: float, population: Sequence[float]) -> float:
    """The percentile rank of ``value`` among ``population`` (0-100, ties count half).

    ``100 · (#below + ½ · #equal) / n``: 100 beats every member, 50 is the median.

    Example:
        >>> percentile_of(0.5, [0.1, 0.2, 0.6, 0.7])
        50.0
        >>> percentile_of(0.2, [0.1, 0.2, 0.6, 0.7])
        37.5
    """
    if not population:
        raise ValueError("percentile_of: empty population")
    below = sum(p < value for p in population)
    equal = sum(p == value for p in population)
    return 100.0 * (below + 0.5 * equal) / len(population)


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def verdict(percentile: float, beats_all: bool, p_value: float | None = None) -> str:
    """One line: does the searched genotype beat random ones?

    Example:
        >>> verdict(50.0, False)
        'the searched genotype is no better than random (percentile 50 of the random ones)'
    """
    where = f"percentile {percentile:.0f} of the random ones"
    test = "" if p_value is None else f"; one-sided Mann-Whitney p = {p_value:.2g}"
    if beats_all:
        line = f"the searched genotype beats every random genotype ({where}{test})"
    elif percentile >= 75:
        line = f"the searched genotype beats most random genotypes ({where}{test})"
    elif percentile > 25:
        line = f"the searched genotype is no better than random ({where}{test})"
    else:
        line = f"the searched genotype is worse than most random genotypes ({where}{test})"
    return line


@dataclass(frozen=True)
class Comparison:
    """The searched genotype's scores (one per seed) against the random genotypes' scores."""

    metric: str
    searched: tuple[float, ...]
    random: tuple[float, ...]
    searched_mean: float
    searched_std: float
    random_mean: float
    random_std: float
    random_median: float
    random_min: float
    random_max: float
    percentile: float
    beats_all: bool
    p_value: float | None
    verdict: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able values."""
        d = asdict(self)
        d["searched"], d["random"] = list(self.searched), list(self.random)
        return d


def _mann_whitney(searched: Sequence[float], random: Sequence[float]) -> float | None:
    """One-sided p-value that the searched scores exceed the random ones (scipy), or None."""
    if len(searched) < 2 or len(random) < 2:
        return None
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:  # pragma: no cover - scipy is a dependency of our stack
        return None
    p = float(mannwhitneyu(searched, random, alternative="greater").pvalue)
    return p if math.isfinite(p) else None


def compare(metric: str, searched: Sequence[float], random: Sequence[float]) -> Comparison:
    """Compare the searched genotype's scores (seeds) with the random genotypes' scores.

    The searched genotype's **mean** over seeds is ranked among the random scores
    (:func:`percentile_of`).

    Args:
        metric: Name of the score (e.g. ``"val/mIoU"``; higher is better).
        searched: The searched genotype's score for each seed.
        random: One score per random genotype.
    """
    if not searched or not random:
        raise ValueError("compare: need at least one searched and one random score")
    mean = statistics.fmean(searched)
    pct = percentile_of(mean, random)
    beats_all = mean > max(random)
    p = _mann_whitney(searched, random)
    return Comparison(
        metric=metric,
        searched=tuple(searched),
        random=tuple(random),
        searched_mean=mean,
        searched_std=_std(searched),
        random_mean=statistics.fmean(random),
        random_std=_std(random),
        random_median=statistics.median(random),
        random_min=min(random),
        random_max=max(random),
        percentile=pct,
        beats_all=beats_all,
        p_value=p,
        verdict=verdict(pct, beats_all, p),
    )
