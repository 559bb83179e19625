import math

import numpy as np
import pytest

from searcher.measure.stats import geomean, rankdata, spearman


def test_rankdata_averages_ties():
    assert rankdata([10, 30, 20, 20]).tolist() == [1.0, 4.0, 2.5, 2.5]


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Monotone but non-linear still ranks perfectly.
    assert spearman([1, 2, 3, 4, 5], [1, 8, 27, 64, 125]) == pytest.approx(1.0)
    # Textbook value: d = (0, -1, 1, 0) -> 1 - 6*2/(4*15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_spearman_matches_pearson_of_ranks_on_random_data():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    expected = np.corrcoef(rankdata(a), rankdata(b))[0, 1]
    assert spearman(a, b) == pytest.approx(expected)


def test_spearman_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_geomean():
    assert geomean([1, 4]) == pytest.approx(2.0)
    assert math.isclose(geomean([2, 2, 2]), 2.0)
