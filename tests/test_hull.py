"""Tests of landscape.hull against the chord test over all pairs, done by brute force."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from landscape import hull
from landscape.hull import VECTORISE_FROM, lower_hull_gap


def brute_force_gap(f: np.ndarray, x: np.ndarray) -> float:
    """max_j of f_j above the lowest chord (i, k) with x_i < x_j < x_k: O(n³)."""
    worst = 0.0
    for j in range(len(f)):
        for i in range(len(f)):
            for k in range(len(f)):
                if min(x[i], x[k]) < x[j] < max(x[i], x[k]):
                    worst = max(worst, f[j] - (f[i] + (f[k] - f[i]) * (x[j] - x[i]) / (x[k] - x[i])))
    return worst


def test_docstring_examples():
    result = doctest.testmod(hull)
    assert result.attempted > 0 and result.failed == 0


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int64, st.integers(1, 14), elements=st.integers(-9, 9)), st.data())
def test_one_curve_matches_brute_force(f, data):
    f = f.astype(float)  # small integers: many collinear triples and ties
    steps = data.draw(hnp.arrays(np.int64, len(f), elements=st.integers(1, 4)))
    x = np.cumsum(steps).astype(float)
    expected = pytest.approx(brute_force_gap(f, x), rel=1e-12, abs=1e-12)
    assert lower_hull_gap(f, x) == expected
    assert lower_hull_gap(f[::-1], x[::-1]) == expected  # decreasing positions
    uniform = brute_force_gap(f, np.arange(len(f), dtype=float))
    assert lower_hull_gap(f) == pytest.approx(uniform, rel=1e-12, abs=1e-12)


def test_both_paths_match_brute_force():
    """Below VECTORISE_FROM curves the chain runs one curve at a time, from it on all at
    once: both give the brute-force gap of every curve, and the same bits."""
    rng = np.random.default_rng(0)
    n = 12
    x = np.cumsum(rng.integers(1, 4, size=n)).astype(float)
    curves = rng.integers(-4, 5, size=(VECTORISE_FROM + 3, n)).astype(float)
    curves[:8] = np.abs(x - x[5]) + np.arange(8)[:, None] * x  # convex: a gap of 0
    curves[8:12] = np.arange(n) % 3  # collinear runs and repeated values
    expected = np.array([brute_force_gap(f, x) for f in curves])
    assert (expected[:8] == 0).all() and (expected[8:] > 0).mean() > 0.9
    together = lower_hull_gap(curves, x)  # the vectorised path
    one_by_one = np.array([lower_hull_gap(f, x) for f in curves])
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_allclose(together, expected, rtol=1e-12, atol=1e-12)
    # Leading axes are kept.
    shaped = lower_hull_gap(curves[:VECTORISE_FROM].reshape(4, -1, n), x)
    np.testing.assert_array_equal(shaped.ravel(), together[:VECTORISE_FROM])


def test_short_curves_have_no_gap():
    assert lower_hull_gap(np.array([3.0])) == 0.0
    assert lower_hull_gap(np.array([[1.0, 5.0], [2.0, 0.0]])).tolist() == [0.0, 0.0]
