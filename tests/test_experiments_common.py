"""experiments/_common.py's equivalence test (TOST) against scipy's one-sided t-tests on
shifted samples, and its power against a simulation."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from _common import equivalence_text, tost  # noqa: E402

sys.path.pop(0)

A = np.array([0.91, 0.95, 0.88, 1.02, 0.97, 0.93])
B = np.array([0.99, 0.94, 1.05, 0.96, 1.01])


@pytest.mark.parametrize("margin", [0.05, 0.1, 0.3])
def test_tost_welch_matches_scipy_one_sided_tests(margin):
    r = tost(A, B, margin)
    # H0 δ ≤ −M: is B + M above A?  H0 δ ≥ M: is B − M below A?  (Welch, one-sided)
    p_low = stats.ttest_ind(B + margin, A, equal_var=False, alternative="greater").pvalue
    p_high = stats.ttest_ind(B - margin, A, equal_var=False, alternative="less").pvalue
    assert r["p_equivalence"] == pytest.approx(max(p_low, p_high), rel=1e-10)
    assert r["p_difference"] == pytest.approx(stats.ttest_ind(B, A, equal_var=False).pvalue, rel=1e-10)
    assert r["diff"] == pytest.approx(B.mean() - A.mean())


def test_tost_paired_matches_scipy_and_verdicts():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 8)
    b = a + rng.normal(0.02, 0.05, 8)
    r = tost(a, b, 0.1, paired=True)
    p_low = stats.ttest_rel(b + 0.1, a, alternative="greater").pvalue
    p_high = stats.ttest_rel(b - 0.1, a, alternative="less").pvalue
    assert r["p_equivalence"] == pytest.approx(max(p_low, p_high), rel=1e-10)
    assert r["verdict"] == "equivalent" and r["ci"][0] > -0.1 and r["ci"][1] < 0.1
    # The same samples unpaired: the between-subject spread hides the equivalence.
    assert tost(a, b, 0.1)["verdict"] == "not detected"
    assert tost(a, b + 1.0, 0.1, paired=True)["verdict"] == "different"
    assert tost([1, 2], [3], 0.1)["verdict"] == "untested"
    assert tost([1.0, 1.0], [1.0, 1.0], 0.1)["verdict"] == "equivalent"
    assert tost([1.0, 1.0], [2.0, 2.0], 0.1)["verdict"] == "different"
    assert equivalence_text(r).startswith("equivalent within ±0.1")


def test_tost_power_matches_simulation():
    """Power at the margin: the share of simulated experiments (true difference M, the
    observed spread) whose two-sided Welch test rejects."""
    rng = np.random.default_rng(0)
    n, sd, margin = 5, 0.1, 0.15
    a = np.linspace(-1, 1, n) * sd / np.std(np.linspace(-1, 1, n), ddof=1)  # sample std exactly sd
    r = tost(a, a + 0.0, margin)
    sims = stats.ttest_ind(rng.normal(margin, sd, (20_000, n)), rng.normal(0, sd, (20_000, n)),
                           equal_var=False, axis=1).pvalue
    # Post-hoc power plugs in the observed spread (df from it too): close to, not exactly,
    # the simulated rate with the spread redrawn.
    assert r["power"] == pytest.approx(np.mean(sims < 0.05), abs=0.04)
    assert 0.3 < r["power"] < 0.9
