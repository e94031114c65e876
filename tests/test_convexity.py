"""Tests of landscape.convexity against closed forms, brute force and scipy."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.signal import find_peaks

from landscape import convexity
from landscape.convexity import (
    CONVEXITY_SCORES,
    FRACTIONS,
    add_scores,
    ccv_excess,
    count_extrema,
    cvx_excess,
    qccv_barrier,
    qcvx_barrier,
    quasi_convexity,
)
from landscape.errors import LandscapeError

TOL = 1e-3
X = np.linspace(-2, 2, 41)  # hits -2, -1, 0, 1, 2
RAMP = np.maximum(np.maximum(X, 0) - np.maximum(X - 1, 0), 0)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
curves = hnp.arrays(np.float64, st.integers(1, 30), elements=finite)


def brute_force_barrier(f: np.ndarray) -> float:
    """The barrier formula, literally, in O(n²)."""
    span = f.max() - f.min()
    if span <= 16 * np.finfo(np.float32).eps * np.abs(f).max():  # flat at float32 resolution
        return 0.0
    worst = 0.0
    for j in range(len(f)):
        left = f[:j].min() if j > 0 else np.inf
        right = f[j + 1:].min() if j < len(f) - 1 else np.inf
        worst = max(worst, f[j] - max(left, right))
    return worst / span if span > 0 else 0.0


def scipy_counts(f: np.ndarray, tol: float) -> tuple[int, int]:
    """Extrema counted with scipy's prominence, the edges padded below everything."""
    span = f.max() - f.min()

    def maxima(g):
        pad = g.min() - span - 1.0
        peaks, _ = find_peaks(np.concatenate([[pad], g, [pad]]), prominence=tol * span)
        return len(peaks)

    return maxima(-f), maxima(f)


def test_docstring_examples():
    result = doctest.testmod(convexity)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- known curves

def test_parabola_is_convex_not_quasi_concave():
    f = X**2
    assert qcvx_barrier(f) == 0.0
    assert qccv_barrier(f) == pytest.approx(1.0)  # climb from both edges (4) to 0, range 4
    assert cvx_excess(f) == 0.0
    assert ccv_excess(f) == 1.0  # the upper hull is the chord at 4 over the edges: 4 above 0
    assert count_extrema(np.linspace(-1, 1, 21) ** 2) == (1, 2)


def test_negative_parabola_is_concave_not_quasi_convex():
    f = -(X**2)
    assert qccv_barrier(f) == 0.0
    assert qcvx_barrier(f) == pytest.approx(1.0)
    assert ccv_excess(f) == 0.0
    assert cvx_excess(f) > TOL
    assert count_extrema(f) == (2, 1)


def test_double_well_barrier_is_one_ninth():
    f = X**4 - 2 * X**2 + 0.5  # minima -0.5 at ±1, bump 0.5 at 0, edges 8.5: range 9
    assert abs(qcvx_barrier(f) - 1 / 9) < 1e-12
    assert qcvx_barrier(f) > TOL
    assert qccv_barrier(f) == pytest.approx(1.0)
    assert count_extrema(f) == (2, 3)


def test_gaussian_bump_is_quasi_concave():
    x = np.linspace(-3, 3, 61)
    f = np.exp(-(x**2))
    assert qccv_barrier(f) == 0.0
    assert qcvx_barrier(f) == pytest.approx(1.0, abs=1e-12)  # equal edges: the full range
    assert count_extrema(f) == (2, 1)
    # Unequal edges: the bump rises 1 - e^-4 above the higher edge, the range is 1 - e^-9.
    x = np.linspace(-3, 2, 51)
    assert x[30] == pytest.approx(0.0, abs=1e-12)
    f = np.exp(-(x**2))
    expected = (1 - np.exp(-4)) / (1 - np.exp(-9))
    assert qcvx_barrier(f) == pytest.approx(expected, rel=1e-12)
    assert expected < 1 - 0.01


def test_ramp_is_quasi_convex_and_concave_but_neither_convex_nor_concave():
    assert qcvx_barrier(RAMP) == 0.0
    assert qccv_barrier(RAMP) == 0.0
    # Lower hull (-2, 0), (0, 0), (2, 1): 1/2 below f(1) = 1; upper hull (-2, 0), (1, 1),
    # (2, 1): 2/3 above f(0) = 0; range 1.
    assert cvx_excess(RAMP) == pytest.approx(0.5, abs=1e-12)
    assert ccv_excess(RAMP) == pytest.approx(2 / 3, abs=1e-12)
    assert cvx_excess(RAMP, x=X) == pytest.approx(0.5, abs=1e-12)
    assert count_extrema(RAMP) == (1, 1)


def test_constant_curve_is_everything():
    f = np.full(7, 3.5)
    assert qcvx_barrier(f) == 0.0 and qccv_barrier(f) == 0.0
    assert cvx_excess(f) == 0.0 and ccv_excess(f) == 0.0
    assert count_extrema(f) == (1, 1)
    assert count_extrema(f, tol=0.0) == (1, 1)


def test_rounding_noise_reads_flat():
    noise = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    f = 1.0 + noise * 2.0**-52  # one ulp of wiggle around 1
    assert qcvx_barrier(f) == 0.0 and qccv_barrier(f) == 0.0 and cvx_excess(f) == 0.0
    assert count_extrema(f, tol=0.0) == (1, 1)
    g = np.float32(1.0) + noise.astype(np.float32) * np.float32(2.0**-23)
    assert qcvx_barrier(g) == 0.0 and count_extrema(g) == (1, 1)
    # The same float32 wiggle read as float64 values is below the default float32
    # resolution, and real variation at float64 resolution; a wiggle well above float32
    # rounding error is variation in any case.
    assert qcvx_barrier(g.astype(np.float64)) == 0.0
    assert qcvx_barrier(1.0 + noise * 1e-12) == 0.0
    fine = quasi_convexity(xr.DataArray(1.0 + noise * 1e-12, dims="alpha"), resolution="float64")
    assert float(fine.qcvx_barrier) == 1.0
    assert qcvx_barrier(1.0 + noise * 1e-5) == 1.0
    assert count_extrema(1.0 + noise * 1e-5) == (3, 2)


def test_short_curves():
    assert qcvx_barrier([1.0]) == 0.0
    assert qcvx_barrier([2.0, 1.0]) == 0.0
    assert cvx_excess([2.0, 1.0]) == 0.0
    assert count_extrema([1.0]) == (1, 1)
    assert count_extrema([2.0, 1.0]) == (1, 1)


def test_cvx_excess_uses_x():
    # Non-uniform x: a curve linear in x is both convex and concave only with the true x.
    x = np.array([0.0, 1.0, 3.0])
    assert ccv_excess(x) == pytest.approx(0.5 / 3)
    assert ccv_excess(x, x=x) == 0.0 and cvx_excess(x, x=x) == 0.0
    assert cvx_excess(x[::-1], x=x[::-1]) == 0.0  # decreasing positions are fine


def test_plateaus_and_equal_peaks_count_by_prominence():
    assert count_extrema([0.0, 1.0, 1.0, 1.0, 0.0], tol=0.0) == (2, 1)
    # Two equal peaks split by a shallow dip: one significant maximum (the other's
    # prominence is the dip, 1e-4 < 0.01).
    assert count_extrema([0.0, 1.0, 0.9999, 1.0, 0.0], tol=0.01) == (2, 1)
    assert count_extrema([0.0, 1.0, 0.5, 1.0, 0.0], tol=0.01) == (3, 2)
    # Prominence exactly at the threshold counts.
    assert count_extrema([0.0, 4.0, 3.0, 4.0, 0.0], tol=0.25) == (3, 2)
    assert count_extrema([0.0, 4.0, 3.5, 4.0, 0.0], tol=0.25) == (2, 1)


# ----------------------------------------------------------------------------- properties

@given(hnp.arrays(np.float64, st.integers(1, 40), elements=finite))
def test_monotone_curves_have_zero_barriers(f):
    f = np.sort(f)
    for g in (f, f[::-1]):
        assert qcvx_barrier(g) == 0.0
        assert qccv_barrier(g) == 0.0


@given(hnp.arrays(np.float64, st.integers(1, 20), elements=finite),
       hnp.arrays(np.float64, st.integers(1, 20), elements=finite))
def test_valleys_are_quasi_convex(left, right):
    f = np.concatenate([np.sort(left)[::-1], np.sort(right)])
    assert qcvx_barrier(f) == 0.0
    assert count_extrema(f, tol=0.0)[0] == 1


@settings(max_examples=200)
@given(curves)
def test_barrier_matches_brute_force(f):
    assert qcvx_barrier(f) == pytest.approx(brute_force_barrier(f), rel=1e-12, abs=1e-12)
    assert qccv_barrier(f) == pytest.approx(brute_force_barrier(-f), rel=1e-12, abs=1e-12)


@given(curves)
def test_qccv_is_qcvx_of_negation(f):
    assert qccv_barrier(f) == qcvx_barrier(-f)
    assert ccv_excess(f) == cvx_excess(-f)


@given(hnp.arrays(np.int64, st.integers(3, 30), elements=st.integers(-100, 100)),
       st.floats(0.01, 100), st.floats(-100, 100))
def test_scores_invariant_to_positive_affine_maps(f, a, b):
    f = f.astype(float)  # integer steps: a·f + b keeps every difference well above rounding
    g = a * f + b
    for score in (qcvx_barrier, qccv_barrier, cvx_excess, ccv_excess):
        assert score(g) == pytest.approx(score(f), abs=1e-6)
    # A negative scale swaps convex and concave.
    assert qcvx_barrier(-a * f + b) == pytest.approx(qccv_barrier(f), abs=1e-6)


@settings(max_examples=300)
@given(hnp.arrays(np.int64, st.integers(1, 25), elements=st.integers(-50, 50), unique=True),
       st.sampled_from([0.0, 0.01, 0.125, 0.25, 0.5]))
def test_counts_match_scipy_prominence(f, tol):
    f = f.astype(float)
    assert count_extrema(f, tol=tol) == scipy_counts(f, tol)


@settings(max_examples=300)
@given(hnp.arrays(np.int64, st.integers(1, 25), elements=st.integers(-20, 20)),
       st.sampled_from([0.0, 0.125, 0.25, 0.5]))
def test_one_significant_minimum_iff_barrier_below_tol(f, tol):
    # The barrier is the prominence of the second deepest valley (exact for dyadic tol).
    f = f.astype(float)
    n_min, n_max = count_extrema(f, tol=tol)
    barrier = qcvx_barrier(f)
    if tol == 0.0:
        assert (n_min == 1) == (barrier == 0.0)
    else:
        assert (n_min == 1) == (barrier < tol)
    assert (n_max == 1) == (qccv_barrier(f) < tol if tol else qccv_barrier(f) == 0.0)


# ----------------------------------------------------------------------------- arrays

def test_vectorised_over_leading_axes_equals_loop():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 4, 15)).cumsum(axis=-1)
    x = np.sort(rng.uniform(0, 5, size=15))
    n_min, n_max = count_extrema(values, tol=0.05)
    assert n_min.shape == (3, 4) and n_min.dtype.kind == "i"
    for idx in np.ndindex(3, 4):
        f = values[idx]
        assert qcvx_barrier(values)[idx] == qcvx_barrier(f)
        assert qccv_barrier(values)[idx] == qccv_barrier(f)
        assert cvx_excess(values, x=x)[idx] == cvx_excess(f, x=x)
        assert ccv_excess(values)[idx] == ccv_excess(f)
        assert (n_min[idx], n_max[idx]) == count_extrema(f, tol=0.05)
    np.testing.assert_array_equal(qcvx_barrier(np.moveaxis(values, -1, 0), axis=0),
                                  qcvx_barrier(values))
    np.testing.assert_array_equal(count_extrema(np.moveaxis(values, -1, 1), axis=1)[0],
                                  count_extrema(values)[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_curve_scores_nan_and_leaves_others_alone(bad):
    values = np.stack([X**4 - 2 * X**2, X**4 - 2 * X**2])
    values[1, 7] = bad
    for score in (qcvx_barrier, qccv_barrier, cvx_excess, ccv_excess):
        out = score(values)
        assert np.isnan(out[1])
        assert out[0] == score(values[0])
    n_min, n_max = count_extrema(values)
    assert n_min.tolist() == [2, -1] and n_max.tolist() == [3, -1]


def test_bad_arguments_raise_landscape_error():
    with pytest.raises(LandscapeError, match="tol"):
        count_extrema(X, tol=-1)
    with pytest.raises(LandscapeError, match="tol"):
        count_extrema(X, tol="big")
    with pytest.raises(LandscapeError, match="axis"):
        qcvx_barrier(X, axis=1)
    with pytest.raises(LandscapeError, match="values"):
        qcvx_barrier(np.zeros((3, 0)))
    with pytest.raises(LandscapeError, match="values"):
        qcvx_barrier(2.0)
    with pytest.raises(LandscapeError, match="x: expected 41"):
        cvx_excess(X, x=X[:-1])
    with pytest.raises(LandscapeError, match="monotone"):
        cvx_excess([1.0, 2.0, 3.0], x=[0.0, 2.0, 1.0])


# ----------------------------------------------------------------------------- xarray, 1-D

def curves_1d() -> xr.DataArray:
    values = np.stack([X**2, -(X**2), RAMP, X**4 - 2 * X**2 + 0.5])
    return xr.DataArray(values, dims=("unit", "alpha"),
                        coords={"unit": [10, 11, 12, 13], "alpha": X,
                                "layer": ("unit", ["a", "b", "c", "d"])})


def test_quasi_convexity_1d():
    ds = quasi_convexity(curves_1d(), dim="alpha")
    assert set(ds.data_vars) == set(CONVEXITY_SCORES)
    for name in CONVEXITY_SCORES:
        assert ds[name].dims == ("unit",)
        assert ds[name].attrs["long_name"] and ds[name].attrs["description"]
    assert ds.unit.values.tolist() == [10, 11, 12, 13]
    assert ds.layer.values.tolist() == ["a", "b", "c", "d"]
    assert ds.quasi_convex.values.tolist() == [True, False, True, False]
    assert ds.quasi_concave.values.tolist() == [False, True, True, False]
    assert ds.convex.values.tolist() == [True, False, False, False]
    assert ds.concave.values.tolist() == [False, True, False, False]
    assert ds.n_minima.values.tolist() == [1, 2, 1, 2]
    assert ds.n_maxima.values.tolist() == [2, 1, 1, 3]
    assert ds.qcvx_barrier.values[3] == pytest.approx(1 / 9, abs=1e-12)
    assert ds.attrs["tol"] == TOL and ds.attrs["dim"] == "alpha"
    expected = {"frac_quasi_convex": 0.5, "frac_quasi_concave": 0.5, "frac_either": 0.75,
                "frac_convex": 0.25, "frac_concave": 0.25}
    for name, value in expected.items():
        assert type(ds.attrs[name]) is float
        assert ds.attrs[name] == value


def test_quasi_convexity_uses_the_coordinate_as_x():
    alpha = np.array([0.0, 1.0, 3.0])
    da = xr.DataArray(alpha, dims="alpha", coords={"alpha": alpha})
    assert float(quasi_convexity(da).ccv_excess) == 0.0
    assert float(quasi_convexity(da.drop_vars("alpha")).ccv_excess) == pytest.approx(0.5 / 3)
    bad = xr.DataArray(alpha, dims="alpha", coords={"alpha": [0.0, 2.0, 1.0]})
    with pytest.raises(LandscapeError, match="alpha"):
        quasi_convexity(bad)


def test_quasi_convexity_nan_curves_are_left_out_of_fractions():
    da = curves_1d().copy()
    da[1, 5] = np.nan  # the concave curve
    ds = quasi_convexity(da, "alpha")
    assert np.isnan(ds.qcvx_barrier.values[1]) and np.isnan(ds.ccv_excess.values[1])
    assert not ds.quasi_concave.values[1] and not ds.concave.values[1]
    assert ds.n_minima.values[1] == -1
    assert ds.attrs["frac_quasi_convex"] == pytest.approx(2 / 3)
    assert ds.attrs["frac_concave"] == 0.0
    all_nan = quasi_convexity(xr.full_like(da, np.nan), "alpha")
    assert np.isnan(all_nan.attrs["frac_quasi_convex"])


def test_quasi_convexity_bad_arguments():
    da = curves_1d()
    with pytest.raises(LandscapeError, match="dim: 'beta'"):
        quasi_convexity(da, "beta")
    with pytest.raises(LandscapeError, match="dim"):
        quasi_convexity(da, ("alpha", "alpha"))
    with pytest.raises(LandscapeError, match="dim"):
        quasi_convexity(da, ("alpha", "unit", "x"))
    with pytest.raises(LandscapeError, match="da"):
        quasi_convexity(da.values)
    with pytest.raises(LandscapeError, match="tol"):
        quasi_convexity(da, tol=float("nan"))


# ----------------------------------------------------------------------------- xarray, 2-D

def symmetric_grid(n: int) -> np.ndarray:
    grid = np.linspace(-1, 1, n)
    return (grid - grid[::-1]) / 2  # exactly antisymmetric: x[n-1-i] == -x[i]


def surface(fn, n0=21, n1=21, extra=None) -> xr.DataArray:
    alpha, beta = symmetric_grid(n0), symmetric_grid(n1)
    values = fn(alpha[:, None], beta[None, :])
    dims, coords = ("alpha", "beta"), {"alpha": alpha, "beta": beta}
    if extra is not None:
        values = values[None] * np.asarray(extra)[:, None, None]
        dims, coords = ("unit", *dims), {**coords, "unit": np.arange(len(extra))}
    return xr.DataArray(values, dims=dims, coords=coords)


@pytest.mark.parametrize("n0,n1", [(21, 21), (21, 13), (5, 9)])
def test_paraboloid_is_quasi_convex_along_every_line(n0, n1):
    ds = quasi_convexity(surface(lambda a, b: a**2 + b**2, n0, n1), ("alpha", "beta"))
    assert ds.attrs["frac_quasi_convex"] == 1.0
    assert ds.attrs["frac_convex"] == 1.0
    assert ds.quasi_convex.all()
    n_diagonals = n0 + n1 - 5  # offsets whose diagonal holds at least 3 samples
    assert ds.sizes["line"] == n0 + n1 + 2 * n_diagonals
    kinds = ds.line_kind.values.tolist()
    assert [kinds.count(k) for k in ("row", "column", "diagonal", "antidiagonal")] == [
        n1, n0, n_diagonals, n_diagonals]


def test_saddle_rows_convex_columns_concave():
    n = 21
    ds = quasi_convexity(surface(lambda a, b: a**2 - b**2, n, n), ("alpha", "beta"))
    kind = ds.line_kind
    rows, columns = ds.sel(line=kind == "row"), ds.sel(line=kind == "column")
    assert rows.quasi_convex.all() and not rows.quasi_concave.any()
    assert columns.quasi_concave.all() and not columns.quasi_convex.any()
    assert rows.convex.all() and columns.concave.all()
    # Along a diagonal of a symmetric grid α² − β² is linear: both quasi-convex and concave.
    diagonals = ds.sel(line=kind.isin(["diagonal", "antidiagonal"]))
    assert diagonals.quasi_convex.all() and diagonals.quasi_concave.all()
    assert rows.line_offset.values.tolist() == list(range(n))
    assert columns.line_offset.values.tolist() == list(range(n))
    expected = list(range(-(n - 3), n - 2))
    assert ds.sel(line=kind == "diagonal").line_offset.values.tolist() == expected
    assert ds.sel(line=kind == "antidiagonal").line_offset.values.tolist() == expected
    assert ds.sel(line=kind == "diagonal").line_length.values.tolist() == [
        n - abs(k) for k in expected]
    assert ds.sizes["line"] == 2 * n + 2 * (2 * n - 5)
    assert ds.attrs["dim"] == "alpha,beta"
    n_lines = ds.sizes["line"]
    # The main diagonal and antidiagonal are α² − α² = 0: constant, so out of the fractions.
    constant = ds.sel(line=ds.constant)
    assert sorted(constant.line_kind.values.tolist()) == ["antidiagonal", "diagonal"]
    assert constant.line_offset.values.tolist() == [0, 0]
    assert ds.attrs["frac_constant"] == pytest.approx(2 / n_lines)
    assert ds.attrs["frac_quasi_convex"] == pytest.approx((n + 2 * (2 * n - 5) - 2) / (n_lines - 2))
    assert ds.attrs["frac_either"] == 1.0


def test_every_2d_line_matches_the_extracted_curve():
    rng = np.random.default_rng(2)
    n0, n1 = 6, 8
    alpha, beta = np.sort(rng.uniform(-1, 1, n0)), np.linspace(0, 1, n1)
    values = rng.normal(size=(3, n0, n1))
    values[2, 1, 1] = np.nan  # poisons one row, column, diagonal and antidiagonal of unit 2
    da = xr.DataArray(values, dims=("unit", "alpha", "beta"),
                      coords={"unit": [0, 1, 2], "alpha": alpha, "beta": beta})
    ds = quasi_convexity(da, ("alpha", "beta"), tol=0.1)
    assert ds.qcvx_barrier.dims == ("unit", "line")
    for line in range(ds.sizes["line"]):
        kind, k = str(ds.line_kind[line].values), int(ds.line_offset[line].values)
        if kind == "row":
            idx, x = [(i, k) for i in range(n0)], alpha
        elif kind == "column":
            idx, x = [(k, j) for j in range(n1)], beta
        elif kind == "diagonal":
            idx, x = [(i, i + k) for i in range(n0) if 0 <= i + k < n1], None
        else:
            idx, x = [(i, n1 - 1 - k - i) for i in range(n0) if 0 <= n1 - 1 - k - i < n1], None
        assert len(idx) == ds.line_length[line] and len(idx) >= 3
        for unit in range(3):
            f = np.array([values[unit, i, j] for i, j in idx])
            got = ds.isel(unit=unit, line=line)
            np.testing.assert_equal(float(got.qcvx_barrier), qcvx_barrier(f))
            np.testing.assert_equal(float(got.ccv_excess), ccv_excess(f, x=x))
            assert (int(got.n_minima), int(got.n_maxima)) == count_extrema(f, tol=0.1)
    poisoned = np.isnan(ds.qcvx_barrier.isel(unit=2).values)
    assert poisoned.sum() == 4 and not np.isnan(ds.qcvx_barrier.isel(unit=[0, 1])).any()


def test_2d_keeps_extra_dims_and_accepts_a_joined_name():
    da = surface(lambda a, b: a**2 + b**2, 9, 9, extra=[1.0, -1.0])
    da = da.expand_dims(anchor=[5, 6]).assign_coords(scale=("unit", [1.0, -1.0]))
    ds = quasi_convexity(da, "alpha,beta")
    assert ds.qcvx_barrier.dims == ("anchor", "unit", "line")
    assert ds.anchor.values.tolist() == [5, 6] and ds.scale.values.tolist() == [1.0, -1.0]
    assert "alpha" not in ds.dims and "beta" not in ds.dims
    assert ds.quasi_convex.sel(unit=0).all() and not ds.quasi_convex.sel(unit=1).any()
    assert ds.attrs["frac_quasi_convex"] == 0.5


def test_small_grid_without_long_diagonals():
    ds = quasi_convexity(surface(lambda a, b: a * b, 2, 5), ("alpha", "beta"))
    assert ds.line_kind.values.tolist() == ["row"] * 5 + ["column"] * 2


# ----------------------------------------------------------------------------- add_scores

def test_add_scores_names_and_attrs(tmp_path):
    loss = surface(lambda a, b: a**2 - b**2, 11, 11)
    ds = xr.Dataset({"loss": loss, "accuracy": -loss}, attrs={"kind": "slice"})
    out = add_scores(ds, "loss", ("alpha", "beta"))
    out = add_scores(out, "accuracy", ("alpha", "beta"), tol=0.01)
    for var in ("loss", "accuracy"):
        for name in CONVEXITY_SCORES:
            assert out[f"{var}_{name}"].dims == ("line",)
            assert out[f"{var}_{name}"].attrs["long_name"].endswith(f"of {var}")
        for name in FRACTIONS:
            assert isinstance(out.attrs[f"{var}_{name}"], float)
    reference = quasi_convexity(loss, ("alpha", "beta"))
    np.testing.assert_array_equal(out.loss_qcvx_barrier, reference.qcvx_barrier)
    assert out.attrs["loss_frac_quasi_convex"] == reference.attrs["frac_quasi_convex"]
    assert out.attrs["accuracy_convexity_tol"] == 0.01
    assert out.attrs["loss_convexity_dim"] == "alpha,beta"
    assert out.attrs["kind"] == "slice"
    assert set(ds.data_vars) == {"loss", "accuracy"} and "loss_frac_either" not in ds.attrs
    # The result survives netCDF.
    out.to_netcdf(tmp_path / "scores.nc", engine="h5netcdf")
    back = xr.load_dataset(tmp_path / "scores.nc", engine="h5netcdf")
    assert back.line_kind.values.tolist() == out.line_kind.values.tolist()
    np.testing.assert_array_equal(back.loss_quasi_convex, out.loss_quasi_convex)


def test_add_scores_1d_activation():
    act = curves_1d().rename(unit="anchor").expand_dims(unit=[0, 1])
    ds = xr.Dataset({"activation": act})
    out = add_scores(ds, "activation", "alpha")
    assert out.activation_quasi_convex.dims == ("unit", "anchor")
    assert out.attrs["activation_frac_either"] == 0.75
    with pytest.raises(LandscapeError, match="var: 'loss'"):
        add_scores(ds, "loss", "alpha")


# ----------------------------------------------------------------------------- flat curves

def test_constant_curves_are_marked_and_left_out_of_fractions():
    x = np.linspace(-1, 1, 21)
    rows = [np.zeros(21),                  # a dead ReLU unit
            np.full(21, np.float32(1.0)),  # a saturated tanh
            x**2,                          # quasi-convex, convex
            x**4 - x**2,                   # double well: neither quasi-convex nor -concave
            -x**2]                         # quasi-concave, concave
    da = xr.DataArray(np.array(rows), dims=("unit", "alpha"), coords={"alpha": x})
    out = add_scores(xr.Dataset({"activation": da}), "activation", "alpha")
    assert out.activation_constant.values.tolist() == [True, True, False, False, False]
    # Constant curves are every shape at once, and nothing else is counted from them.
    assert out.activation_quasi_convex.values[:2].all() and out.activation_convex.values[:2].all()
    assert out.attrs["activation_frac_constant"] == 2 / 5
    assert out.attrs["activation_frac_quasi_convex"] == 1 / 3
    assert out.attrs["activation_frac_quasi_concave"] == 1 / 3
    assert out.attrs["activation_frac_either"] == 2 / 3
    assert out.attrs["activation_frac_convex"] == 1 / 3
    assert out.attrs["activation_frac_concave"] == 1 / 3
    # Only constant curves: no fraction of shapes to report.
    flat = quasi_convexity(da[:2])
    assert flat.attrs["frac_constant"] == 1.0 and np.isnan(flat.attrs["frac_quasi_convex"])
    # NaN curves are neither constant nor counted.
    with_nan = da.copy()
    with_nan[2, 3] = np.nan
    ds = quasi_convexity(with_nan)
    assert ds.constant.values.tolist() == [True, True, False, False, False]
    assert ds.attrs["frac_constant"] == 2 / 4 and ds.attrs["frac_quasi_convex"] == 0.0


def test_flatness_follows_the_dtype_the_curve_was_evaluated_in():
    # A float32 evaluation of a constant 1 that wobbles by a few float32 ulps, stored as float64.
    wobble = np.array([0, 3, -2, 5, 0, -4, 1], dtype=np.float64) * np.finfo(np.float32).eps
    f = 1.0 + wobble
    ds = quasi_convexity(xr.DataArray(f, dims="alpha"), dtype="float32")
    assert bool(ds.constant) and bool(ds.quasi_convex) and ds.attrs["dtype"] == "float32"
    assert ds.attrs["noise_ulps"] == convexity.NOISE_ULPS
    # Read as float64 values the same wobble is still below float32 resolution: flat too,
    # unless the finer float64 resolution is asked for, where it is shape.
    ds64 = quasi_convexity(xr.DataArray(f, dims="alpha"))
    assert bool(ds64.constant) and ds64.attrs["dtype"] == "float64"
    assert ds64.attrs["resolution"] == "float32"
    fine = quasi_convexity(xr.DataArray(f, dims="alpha"), resolution="float64")
    assert not bool(fine.constant) and not bool(fine.quasi_convex)
    assert fine.attrs["resolution"] == "float64"
    # A coarser dtype than the resolution sets the floor: 16 float16 ulps.
    eps16 = float(np.finfo(np.float16).eps)
    assert bool(quasi_convexity(xr.DataArray(1 + np.array([0, 10 * eps16, 0]), dims="alpha"),
                                dtype="float16").constant)
    assert not bool(quasi_convexity(xr.DataArray(1 + np.array([0, 20 * eps16, 0]), dims="alpha"),
                                    dtype="float16").constant)
    # The floor scales with the magnitude: NOISE_ULPS float32 eps of max |f|, just in and out.
    eps32 = float(np.finfo(np.float32).eps)
    for scale in (1.0, 1e-3, 1e4):
        inside = scale * (1 + np.array([0.0, 0.9, 0.0]) * convexity.NOISE_ULPS * eps32)
        outside = scale * (1 + np.array([0.0, 1.1, 0.0]) * convexity.NOISE_ULPS * eps32)
        assert qcvx_barrier(inside, dtype=np.float32) == 0.0
        assert qcvx_barrier(outside, dtype=np.float32) == pytest.approx(1.0)
        assert count_extrema(outside, dtype="float32") == (2, 1)
        assert qcvx_barrier(inside) == 0.0  # float64 values: still the float32 floor
        assert qcvx_barrier(outside) == pytest.approx(1.0)
    import torch

    assert bool(quasi_convexity(xr.DataArray(f, dims="alpha"), dtype=torch.float32).constant)
    assert qcvx_barrier(1 + wobble * 1e3, dtype="torch.float64") == pytest.approx(7 / 9)  # 5 above -2
    for bad in ("int32", "cheese", object):
        with pytest.raises(LandscapeError, match="dtype: expected a floating dtype"):
            quasi_convexity(xr.DataArray(f, dims="alpha"), dtype=bad)
