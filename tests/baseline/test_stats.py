"""The comparison's arithmetic, against hand-computed values."""

import statistics

import pytest

from lightning_nas.baseline.stats import compare, percentile_of, verdict


def test_percentile_counts_below_and_half_the_ties():
    scores = [0.50, 0.52, 0.55, 0.55, 0.60]
    assert percentile_of(0.49, scores) == 0.0
    assert percentile_of(0.61, scores) == 100.0
    assert percentile_of(0.56, scores) == 80.0  # 4 of 5 below
    assert percentile_of(0.55, scores) == 60.0  # 2 below + 2 ties / 2 = 3 of 5
    assert percentile_of(0.52, scores) == 30.0  # 1 below + 1 tie / 2
    with pytest.raises(ValueError, match="empty"):
        percentile_of(0.5, [])


def test_compare_ranks_the_searched_mean():
    searched, random = [0.60, 0.62, 0.64], [0.50, 0.55, 0.58, 0.61, 0.66]
    c = compare("val/mIoU", searched, random)
    assert c.searched_mean == pytest.approx(0.62)
    assert c.searched_std == pytest.approx(0.02)  # sample std of 0.60, 0.62, 0.64
    assert c.random_mean == pytest.approx(0.58)
    assert c.random_std == pytest.approx(statistics.stdev(random))
    assert (c.random_min, c.random_median, c.random_max) == (0.50, 0.58, 0.66)
    assert c.percentile == 80.0  # 0.62 beats 0.50, 0.55, 0.58, 0.61
    assert not c.beats_all
    assert "beats most random genotypes (percentile 80" in c.verdict
    assert c.to_dict()["searched"] == searched


def test_verdict_is_honest_when_the_search_loses():
    c = compare("val/mIoU", [0.50, 0.52, 0.51], [0.55, 0.56, 0.58, 0.60])
    assert c.percentile == 0.0
    assert c.verdict.startswith("the searched genotype is worse than most random genotypes")
    assert "no better than random" in verdict(50.0, False)
    assert "beats every random genotype" in compare("m", [0.9, 0.9], [0.1, 0.2]).verdict


def test_mann_whitney_p_value_is_exact_for_full_separation():
    # searched (3) all above random (4): exact one-sided p = 1 / C(7, 3) = 1/35
    c = compare("m", [0.8, 0.81, 0.82], [0.1, 0.2, 0.3, 0.4])
    assert c.p_value == pytest.approx(1 / 35)
    assert compare("m", [0.5], [0.1, 0.2]).p_value is None  # one seed: no test
