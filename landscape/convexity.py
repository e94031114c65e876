"""Quasi-convexity and convexity scores of sampled curves and surfaces.

The question behind these scores: how often is a slice of a random network's
loss surface, or a unit's response along a line in input space, quasi-convex
(unimodal with a single valley) or quasi-concave (a single hill), and how does
the initialisation change that?  A 1-D function is quasi-convex when its
sublevel sets are intervals, i.e. it falls and then rises (Boyd & Vandenberghe,
*Convex Optimization*, 2004, §3.4); it is convex when it lies below its chords.

Definitions, for a curve sampled as f_0 .. f_n (all scores are relative to the
curve's range ``max f − min f`` so that they are invariant to ``a·f + b``, a > 0):

* **quasi-convexity barrier** (:func:`qcvx_barrier`)::

      max_j [f_j − max(min_{i<j} f_i, min_{k>j} f_k)]⁺ / (max f − min f)

  the height of the worst bump one must climb between a point and the lower of
  the two sides; the minimum over an empty set is +inf, so the endpoints add
  nothing.  It is 0 exactly when the samples are monotone or valley-shaped, and
  it equals the depth of the second most prominent valley (its persistence).
  :func:`qccv_barrier` is the same on −f (quasi-concavity).
* **convexity excess** (:func:`cvx_excess`)::

      max_j [f_j − H(x_j)] / (max f − min f),   H the lower convex hull of {(x_i, f_i)}

  the height of the worst sample above the chord of any two samples around it
  (H(x_j) = min over i ≤ j ≤ k of the chord (i, k) at x_j; :mod:`landscape.hull`), read
  as 0 within the rounding-noise floor below.  It is 0 for a convex sequence.
  :func:`ccv_excess` is the same on −f (the upper hull).
* **significant extrema** (:func:`count_extrema`): local minima and maxima,
  endpoints and plateaus included, whose topographic prominence (persistence,
  Edelsbrunner, Letscher & Zomorodian 2002) is at least ``tol · (max f − min f)``,
  the domain's edges counting as lower than everything (for maxima; higher for
  minima).  A curve has one significant minimum exactly when its barrier is
  below ``tol`` (a barrier of exactly ``tol`` counts two minima yet reads
  quasi-convex).

A curve *is* quasi-convex when ``qcvx_barrier ≤ tol``, quasi-concave when
``qccv_barrier ≤ tol``, convex when ``cvx_excess ≤ tol`` and concave when
``ccv_excess ≤ tol``; ``tol`` defaults to 1e-3.

**Verdicts that hold as the grid refines.**  Let f be continuous on [a, b], sampled at
a = x_0 < .. < x_n = b with spacing ≤ h, ω its modulus of continuity (ω(h) ≤ L·h for an
L-Lipschitz f); scores before the division by the range (itself within ω(h) of f's).

* Excess.  Let P be the piecewise-linear interpolant of the samples: ‖P − f‖∞ ≤ ω(h),
  and H is the convex envelope of P (the envelope of a polygon is the hull of its
  vertices).  Taking envelopes does not increase sup distances (conv f − ω ≤ P gives
  conv f − ω ≤ conv P, and symmetrically), so ‖H − conv f‖∞ ≤ ω(h); and since P − H is
  linear between samples, max_j (f_j − H(x_j)) = sup (P − conv P), within 2ω(h) of
  sup (f − conv f).  That limit is 0 for a convex f, where the excess is 0 at every h
  (samples of a convex function lie below the chord of any two around them), and a
  fixed positive number for a non-convex f (x⁴ − 2x² + 0.5 on [−2, 2]: 1/9, and
  0.108–0.111 at every count from 21 to 4 001): the verdict settles once 2ω(h) is
  below excess − tol.  The local test it replaces compared f_j with the chord of its
  two neighbours, a gap of −h² f''(x_j) / 2 + O(h⁴) → 0: on a fine grid every smooth
  curve read convex and concave at once, and a kink's gap fell as h.
* Barrier.  The prefix and suffix minima of the samples are within ω(h) of the
  continuum's, and every point within ω(h) of a sample, so the barrier is within a few
  ω(h) of the continuum's: a bump of height B above the lower side is seen at every h
  with a few ω(h) < B − tol·range, and a quasi-convex f (barrier 0) reads 0 at every h.
* Extrema: each prominence moves by a few ω(h) likewise, and the counts settle.
* Flatness compares the range with a floor that does not depend on h at all.
* Rounding adds errors of a few eps · max |f| at every h, which can lift a sample of a
  convex curve above the hull of its rounded neighbours: a gap within the noise floor
  below reads 0 (the barrier needs none, see below).

**Flat curves.**  A curve is *constant* when its range is within the rounding noise of
float32, or of the precision it was evaluated in if that is coarser::

    max f − min f ≤ NOISE_ULPS · eps · max |f|,    NOISE_ULPS = 16,

eps the larger machine epsilon of the dtype the values were evaluated in (``dtype``; by
default the values' own, but a float32 forward pass stored as float64 must say float32)
and of the resolution ``RESOLUTION`` = float32 (``resolution``; "float64" asks for the
finer floor of a float64 run).  The resolution makes flatness a property of the curve,
not of the precision a run happened to use: a saturated tanh whose output moves by 1e-7
of its magnitude is flat whether computed in float32 (a few ulps of rounding noise) or
in float64 (where it is resolved).  With a float32 floor for float64 runs too, the
float32 and float64 verdicts of a tanh mlp at bias scale 8 differ on 0.2 % of all
curves; with each dtype's own floor on 17 % (42 % of its curves are flat in float32, 3 %
in float64).  A constant curve (a dead ReLU unit, a saturated tanh) is every shape at
once: its scores are 0, all four verdicts are true, it has one minimum and one maximum,
and it is marked ``constant`` and left out of every fraction but ``frac_constant``.  The
factor was measured: evaluating the same input-space slices (mlp with tanh and ReLU,
cnn; bias scales 0, 1, 8) in float32 and float64, the float32 error
``max_j |f32_j − f64_j|`` reads 0.2–3 eps · max |f| at the median and 6–80 at the 99th
percentile, the worst cases being units near a ReLU's kink, whose small value is the
difference of large terms.  The same floor bounds the hull gap that counts: on that tanh
mlp the float32 and float64 convex and concave verdicts differ on none of 512 curves with
it, on 0.8 % and 1.4 % without (``experiments/float32_verdicts.py``; curves of a range of
a few hundred ulps, whose shape is partly rounding noise, read convex within it).  The quasi-convexity
verdicts keep ``tol``: rounding to nearest is monotone and quasi-convexity is invariant
under monotone maps; on curves that are not constant the float32 and float64 verdicts
agree on all but 1 in 300 (tanh mlp at bias scale 8), whereas widening ``tol`` by the
noise floor made them disagree on 5 %.

The 1-D scores work along the last axis (or ``axis``) of an array, so many
curves are scored at once, in O(n) per curve.  A curve holding a NaN or an
infinity anywhere gets NaN scores and counts of −1; its boolean flags are
False and the fractions in :func:`quasi_convexity` leave it out.

:func:`quasi_convexity` scores the curves of an ``xarray.DataArray`` along one
dimension, or along every row, column, diagonal and antidiagonal of a 2-D grid;
:func:`add_scores` merges those scores into a result dataset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np
import xarray as xr

from .errors import LandscapeError
from .hull import lower_hull_gap

DEFAULT_TOL = 1e-3
# The rounding-noise floor of a curve evaluated in a dtype of machine epsilon eps is
# NOISE_ULPS · eps · max|f| (see the module docstring for how it was measured).
NOISE_ULPS = 16
# Flatness is judged at float32 resolution at least, whatever the precision of the run.
RESOLUTION = "float32"

CONVEXITY_SCORES = ("qcvx_barrier", "qccv_barrier", "quasi_convex", "quasi_concave",
                    "cvx_excess", "ccv_excess", "convex", "concave", "n_minima", "n_maxima",
                    "constant")
FRACTIONS = ("frac_quasi_convex", "frac_quasi_concave", "frac_either", "frac_convex",
             "frac_concave", "frac_constant")
LINE_KINDS = ("row", "column", "diagonal", "antidiagonal")
MIN_DIAGONAL_LENGTH = 3

_SCORE_ATTRS = {
    "qcvx_barrier": ("quasi-convexity barrier",
                     "max_j [f_j - max(min_{i<j} f_i, min_{k>j} f_k)]+ / (max f - min f); "
                     "0 for monotone or valley-shaped curves"),
    "qccv_barrier": ("quasi-concavity barrier", "qcvx_barrier of -f; 0 for monotone or "
                     "hill-shaped curves"),
    "quasi_convex": ("quasi-convex", "qcvx_barrier <= tol"),
    "quasi_concave": ("quasi-concave", "qccv_barrier <= tol"),
    "cvx_excess": ("convexity excess", "max_j [f_j - H(x_j)] / (max f - min f), H the lower "
                   "convex hull of the samples (0 when within the noise floor); 0 for convex "
                   "curves"),
    "ccv_excess": ("concavity excess", "cvx_excess of -f; 0 for concave curves"),
    "convex": ("convex", "cvx_excess <= tol"),
    "concave": ("concave", "ccv_excess <= tol"),
    "n_minima": ("significant minima", "local minima (endpoints and plateaus included) with "
                 "prominence >= tol * (max f - min f); -1 for curves with NaN"),
    "n_maxima": ("significant maxima", "local maxima (endpoints and plateaus included) with "
                 "prominence >= tol * (max f - min f); -1 for curves with NaN"),
    "constant": ("constant", "max f - min f <= NOISE_ULPS * eps * max |f|, eps the larger of the "
                 "dtype the curve was evaluated in and the resolution (float32 by default): flat "
                 "within rounding noise; every verdict of a constant curve is true, and it is "
                 "left out of every frac_* but frac_constant"),
}


# ----------------------------------------------------------------------------- validation

def _check_tol(tol) -> float:
    try:
        value = float(tol)
    except (TypeError, ValueError):
        raise LandscapeError(f"tol: expected a number >= 0, got {tol!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise LandscapeError(f"tol: expected a finite number >= 0, got {tol!r}")
    return value


def _dtype_name(dtype, array: np.ndarray) -> str:
    """The name of the floating dtype values were evaluated in: ``dtype`` (a numpy or torch
    dtype, or its name), by default the values' own (float64 for other values)."""
    if dtype is None:
        return array.dtype.name if np.issubdtype(array.dtype, np.floating) else "float64"
    text = str(dtype)
    if text.startswith("torch.") or text == "bfloat16":  # torch dtypes without importing torch
        name = text.removeprefix("torch.")
        if name == "bfloat16" or name in ("float16", "float32", "float64", "half", "float", "double"):
            return {"half": "float16", "float": "float32", "double": "float64"}.get(name, name)
    else:
        try:
            resolved = np.dtype(dtype)
        except TypeError:
            resolved = None
        if resolved is not None and np.issubdtype(resolved, np.floating):
            return resolved.name
    raise LandscapeError(f"dtype: expected a floating dtype such as float32, got {dtype!r}")


def _eps(name: str) -> float:
    """Machine epsilon of the floating dtype ``name``."""
    return 2.0 ** -7 if name == "bfloat16" else float(np.finfo(np.dtype(name)).eps)


class _Curves(NamedTuple):
    values: np.ndarray   # float64, one curve per position of the leading axes; bad ones zeroed
    invalid: np.ndarray  # the curve holds NaN or inf
    span: np.ndarray     # max f - min f, 0 for flat curves
    flat: np.ndarray     # the range is within the rounding-noise floor (False for invalid ones)
    floor: np.ndarray    # the rounding-noise floor NOISE_ULPS · eps · max |f|


def _coarser(*names: str) -> str:
    """The dtype name of largest machine epsilon."""
    return max(names, key=_eps)


def _prepare(values, axis, dtype=None, resolution=RESOLUTION) -> _Curves:
    """Curves moved to the last axis, with their validity, ranges and noise floors (at the
    coarser of ``dtype`` and ``resolution``)."""
    array = np.asarray(values)
    eps = _eps(_coarser(_dtype_name(dtype, array), _dtype_name(resolution, array)))
    try:
        curves = array.astype(float)
    except (TypeError, ValueError):
        raise LandscapeError(f"values: expected an array of numbers, got {array.dtype} values"
                             ) from None
    if curves.ndim == 0:
        raise LandscapeError("values: expected an array with at least one axis, got a scalar")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise LandscapeError(f"axis: expected an integer, got {axis!r}")
    if not -curves.ndim <= axis < curves.ndim:
        raise LandscapeError(f"axis: {axis} is out of range for values with {curves.ndim} "
                             f"dimensions; allowed {-curves.ndim} .. {curves.ndim - 1}")
    curves = np.moveaxis(curves, axis, -1)
    if curves.shape[-1] == 0:
        raise LandscapeError("values: curves are empty along axis; need at least one sample")
    invalid = ~np.isfinite(curves).all(axis=-1)
    if invalid.any():
        # Zero the bad curves so that the arithmetic below stays quiet; they read NaN at the end.
        curves = np.where(invalid[..., None], 0.0, curves)
    span = curves.max(axis=-1) - curves.min(axis=-1)
    # A range within rounding error of the values is no variation at all: without this,
    # relative scores of a constant computed in floating point would read its rounding noise.
    floor = NOISE_ULPS * eps * np.abs(curves).max(axis=-1)
    flat = (span <= floor) & ~invalid
    return _Curves(curves, invalid, np.where(flat, 0.0, span), flat, floor)


def _relative(excess: np.ndarray, curves: _Curves):
    """excess / span, 0 for flat curves, NaN for invalid ones."""
    out = np.where(curves.span > 0, excess / np.where(curves.span > 0, curves.span, 1.0), 0.0)
    return np.where(curves.invalid, np.nan, out)[()]


def _positions(x, n: int, name: str = "x"):
    """Sample positions as a float array of ``n`` strictly monotone values, or None (uniform)."""
    if x is None:
        return None
    try:
        coords = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise LandscapeError(f"{name}: expected numeric sample positions, got {x!r}") from None
    if coords.shape != (n,):
        raise LandscapeError(f"{name}: expected {n} sample positions (one per sample), got shape "
                             f"{coords.shape}")
    steps = np.diff(coords)
    if not np.isfinite(coords).all() or not ((steps > 0).all() or (steps < 0).all()):
        raise LandscapeError(f"{name}: sample positions must be finite and strictly monotone, "
                             f"got {coords.tolist()}")
    return coords


# ----------------------------------------------------------------------------- 1-D scores

def _barrier(f: np.ndarray, curves: _Curves):
    edge = np.full(f.shape[:-1] + (1,), np.inf)  # the minimum over an empty side
    before = np.concatenate([edge, np.minimum.accumulate(f, axis=-1)[..., :-1]], axis=-1)
    after = np.minimum.accumulate(f[..., ::-1], axis=-1)[..., ::-1]
    after = np.concatenate([after[..., 1:], edge], axis=-1)
    excess = np.clip(f - np.maximum(before, after), 0.0, None).max(axis=-1)
    return _relative(excess, curves)


def _excess(f: np.ndarray, x, curves: _Curves):
    """The hull gap relative to the range; 0 when within the rounding-noise floor."""
    gap = lower_hull_gap(f, x)
    return _relative(np.where(gap > curves.floor, gap, 0.0), curves)


def qcvx_barrier(values, axis: int = -1, *, dtype=None):
    """Quasi-convexity barrier of every curve along ``axis`` (see the module docstring).

    ``max_j [f_j − max(min_{i<j} f_i, min_{k>j} f_k)]⁺ / (max f − min f)``, from prefix and
    suffix minima in O(n).  Returns an array of the shape of ``values`` without ``axis``
    (a scalar for one curve); NaN where a curve holds NaN or inf, 0 for flat curves (a range
    within the rounding noise of ``dtype``, the dtype the values were evaluated in; by
    default their own).

    >>> float(qcvx_barrier([0.0, 2.0, 1.0, 3.0]))  # bump 2 above max(0, 1), range 3
    0.3333333333333333
    >>> float(qcvx_barrier([3.0, 1.0, 0.0, 2.0]))  # a valley
    0.0
    """
    curves = _prepare(values, axis, dtype)
    return _barrier(curves.values, curves)


def qccv_barrier(values, axis: int = -1, *, dtype=None):
    """Quasi-concavity barrier: :func:`qcvx_barrier` of ``-values``.

    >>> float(qccv_barrier([0.0, 2.0, 1.0, 3.0]))  # dip 1 below min(2, 3), range 3
    0.3333333333333333
    """
    curves = _prepare(values, axis, dtype)
    return _barrier(-curves.values, curves)


def cvx_excess(values, x=None, axis: int = -1, *, dtype=None):
    """Convexity excess of every curve along ``axis`` (see the module docstring).

    ``max_j [f_j − H(x_j)] / (max f − min f)``, H the lower convex hull of the samples
    (the lowest chord of two samples around x_j), read as 0 when the gap is within the
    rounding-noise floor ``NOISE_ULPS · eps · max |f|``; ``x`` (strictly monotone, one
    position per sample) defaults to a uniform grid.  0 for convex curves and curves of
    fewer than 3 samples; unlike a chord of neighbours, it does not fade as the grid
    refines.

    >>> float(cvx_excess([0.0, 2.0, 2.0]))  # 2 above the chord (0 + 2) / 2 = 1, range 2
    0.5
    >>> float(cvx_excess([0.0, 2.0, 2.0], x=[0.0, 1.0, 4.0]))  # chord at 1: 0.5
    0.75
    >>> float(cvx_excess([0.0, 3.0, 3.0, 1.0, 2.0]))  # hull (0, 0), (3, 1): 3 - 1/3 at 1
    0.8888888888888888
    """
    curves = _prepare(values, axis, dtype)
    return _excess(curves.values, _positions(x, curves.values.shape[-1]), curves)


def ccv_excess(values, x=None, axis: int = -1, *, dtype=None):
    """Concavity excess: :func:`cvx_excess` of ``-values``.

    >>> float(ccv_excess([0.0, 0.0, 2.0]))  # 1 below the chord, range 2
    0.5
    """
    curves = _prepare(values, axis, dtype)
    return _excess(-curves.values, _positions(x, curves.values.shape[-1]), curves)


def _count_maxima(f: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Maxima of prominence >= threshold along the last axis, edges lower than everything.

    A hysteresis (zigzag) pass: while rising, a peak is confirmed once the curve drops at
    least ``threshold`` below the running maximum; while falling, a trough once it rises at
    least ``threshold`` above the running minimum.  In 1-D the confirmed peaks are exactly the
    maxima whose prominence (persistence) reaches the threshold; a peak still rising at the
    end is confirmed by the edge.  Moves must be strictly positive, so that plateaus count
    once even with a threshold of 0.
    """
    rising = np.ones(f.shape[:-1], dtype=bool)
    extreme = f[..., 0].copy()
    count = np.zeros(f.shape[:-1], dtype=np.int64)
    for j in range(1, f.shape[-1]):
        value = f[..., j]
        against = np.where(rising, extreme - value, value - extreme)
        turn = (against >= threshold) & (against > 0)
        count += turn & rising
        rising = rising ^ turn
        extreme = np.where(turn, value,
                           np.where(rising, np.maximum(extreme, value), np.minimum(extreme, value)))
    return count + rising


def _counts(curves: _Curves, tol: float) -> tuple[np.ndarray, np.ndarray]:
    threshold = tol * curves.span
    flat = curves.span == 0  # one plateau: one minimum and one maximum, whatever the noise
    n_minima, n_maxima = (
        np.where(curves.invalid, -1, np.where(flat, 1, _count_maxima(f, threshold)))
        for f in (-curves.values, curves.values))
    return n_minima[()], n_maxima[()]


def count_extrema(values, tol: float = DEFAULT_TOL, axis: int = -1, *, dtype=None):
    """Numbers of significant local minima and maxima of every curve along ``axis``.

    Endpoints and plateaus count; an extremum is significant when its topographic
    prominence is at least ``tol · (max f − min f)``, the domain's edges being lower than
    everything for maxima and higher than everything for minima (so the global minimum and
    maximum always count).  A curve is quasi-convex exactly when it has one significant
    minimum.  ``dtype``: the dtype the values were evaluated in (by default their own), which
    decides which curves are flat.  Returns ``(n_minima, n_maxima)``, integer arrays of the
    shape of ``values`` without ``axis``; −1 for curves holding NaN or inf.  A flat curve has
    one of each.

    >>> [int(c) for c in count_extrema([1.0, 0.0, 1.0])]  # x²: one valley, two edge maxima
    [1, 2]
    >>> [int(c) for c in count_extrema([0.0, 1.0, 0.9, 2.0], tol=0.2)]  # dip of 0.1 < 0.4
    [1, 1]
    """
    tol = _check_tol(tol)
    return _counts(_prepare(values, axis, dtype), tol)


def _score_curves(values: np.ndarray, x, tol: float, dtype) -> dict[str, np.ndarray]:
    """Every score of CONVEXITY_SCORES for the curves along the last axis of ``values``."""
    curves = _prepare(values, -1, dtype, resolution=dtype)  # dtype: already the floor's
    f = curves.values
    x = _positions(x, f.shape[-1])
    qcvx, qccv = np.asarray(_barrier(f, curves)), np.asarray(_barrier(-f, curves))
    cvx, ccv = np.asarray(_excess(f, x, curves)), np.asarray(_excess(-f, x, curves))
    n_minima, n_maxima = (np.asarray(c) for c in _counts(curves, tol))
    return {"qcvx_barrier": qcvx, "qccv_barrier": qccv,
            "quasi_convex": qcvx <= tol, "quasi_concave": qccv <= tol,
            "cvx_excess": cvx, "ccv_excess": ccv, "convex": cvx <= tol, "concave": ccv <= tol,
            "n_minima": n_minima, "n_maxima": n_maxima, "constant": np.asarray(curves.flat)}


# ----------------------------------------------------------------------------- 2-D lines

def _diagonal_length(n0: int, n1: int, offset: int) -> int:
    return max(0, min(n0, n1 - offset) if offset >= 0 else min(n0 + offset, n1))


def _diagonal_scores(grid: np.ndarray, tol: float, dtype) -> tuple[list[int], list[int], dict]:
    """Scores of the diagonals (j − i = offset) of length >= 3 of the last two axes.

    Diagonals differ in length, so they are scored in groups of equal length and put back
    in the order of their offsets.  Positions along a diagonal serve as x (uniform).
    """
    n0, n1 = grid.shape[-2:]
    offsets = [k for k in range(-(n0 - 1), n1)
               if _diagonal_length(n0, n1, k) >= MIN_DIAGONAL_LENGTH]
    if not offsets:
        return [], [], {}
    by_length: dict[int, list[int]] = defaultdict(list)
    for k in offsets:
        by_length[_diagonal_length(n0, n1, k)].append(k)
    order, groups = [], []
    for ks in by_length.values():
        curves = np.stack([np.diagonal(grid, k, axis1=-2, axis2=-1) for k in ks], axis=-2)
        groups.append(_score_curves(curves, None, tol, dtype))
        order.extend(ks)
    permutation = np.argsort(order)
    scores = {name: np.concatenate([g[name] for g in groups], axis=-1)[..., permutation]
              for name in CONVEXITY_SCORES}
    ordered = [order[p] for p in permutation]
    return ordered, [_diagonal_length(n0, n1, k) for k in ordered], scores


def _line_scores(grid: np.ndarray, x0, x1, tol: float, dtype):
    """Scores of rows, columns, diagonals and antidiagonals of the last two axes of ``grid``."""
    n0, n1 = grid.shape[-2:]
    kinds: list[str] = []
    offsets: list[int] = []
    lengths: list[int] = []
    parts: list[dict] = []

    def add(kind, line_offsets, line_lengths, scores):
        if line_offsets:
            kinds.extend([kind] * len(line_offsets))
            offsets.extend(line_offsets)
            lengths.extend(line_lengths)
            parts.append(scores)

    # A row runs along dim[0] at fixed index j of dim[1]; a column along dim[1] at fixed i.
    add("row", list(range(n1)), [n0] * n1,
        _score_curves(np.swapaxes(grid, -1, -2), x0, tol, dtype))
    add("column", list(range(n0)), [n1] * n0, _score_curves(grid, x1, tol, dtype))
    add("diagonal", *_diagonal_scores(grid, tol, dtype))
    add("antidiagonal", *_diagonal_scores(grid[..., ::-1], tol, dtype))
    scores = {name: np.concatenate([p[name] for p in parts], axis=-1) for name in CONVEXITY_SCORES}
    return kinds, offsets, lengths, scores


# ----------------------------------------------------------------------------- xarray API

def _coordinate_positions(da: xr.DataArray, dim: Hashable):
    """Numeric coordinate values of ``dim`` as sample positions, or None (uniform)."""
    if dim not in da.coords or not np.issubdtype(da[dim].dtype, np.number):
        return None
    positions = da[dim].values
    _positions(positions, da.sizes[dim], name=f"coordinate {dim!r}")  # validates them
    return positions


def _parse_dims(da: xr.DataArray, dim) -> tuple[Hashable, ...]:
    if isinstance(dim, str) and dim not in da.dims and "," in dim:
        dim = tuple(part.strip() for part in dim.split(","))
    dims = (dim,) if isinstance(dim, str) or not isinstance(dim, Sequence) else tuple(dim)
    if len(dims) not in (1, 2) or (len(dims) == 2 and dims[0] == dims[1]):
        raise LandscapeError(f"dim: expected one dimension name or a pair of distinct names, "
                             f"got {dim!r}")
    for d in dims:
        if d not in da.dims:
            raise LandscapeError(f"dim: {d!r} is not a dimension of the data; allowed "
                                 f"{', '.join(map(str, da.dims)) or '(none)'}")
        if da.sizes[d] == 0:
            raise LandscapeError(f"dim: dimension {d!r} is empty; need at least one sample")
    return dims


def _fraction(flags: np.ndarray, valid: np.ndarray) -> float:
    return float(flags[valid].mean()) if valid.any() else float("nan")


def quasi_convexity(da: xr.DataArray, dim: str | Sequence[str] = "alpha",
                    tol: float = DEFAULT_TOL, dtype=None, resolution=RESOLUTION) -> xr.Dataset:
    """Quasi-convexity and convexity scores of the curves of ``da``.

    ``dim`` one name: every 1-D curve of ``da`` along ``dim`` is scored, with the numeric
    coordinate of ``dim`` (if any) as sample positions for the convexity excess.  The
    variables of :data:`CONVEXITY_SCORES` have the dimensions of ``da`` without ``dim``.

    ``dim`` a pair ``(d0, d1)``: every row (a line along d0 at each index of d1), column
    (along d1 at each index of d0), diagonal (j − i = offset) and antidiagonal (the diagonal
    of the grid flipped along d1, i + j = n1 − 1 − offset) of length ≥ 3 of the 2-D grid is
    scored; diagonals use positions as x.  A new dimension ``line`` replaces d0 and d1, with
    coordinates ``line_kind`` (row/column/diagonal/antidiagonal), ``line_offset`` (the index
    of the fixed coordinate, or the diagonal offset) and ``line_length`` (samples).  Other
    dimensions of ``da`` are kept.

    ``dtype``: the floating dtype the values were evaluated in (a numpy or torch dtype or
    its name; by default ``da``'s own), which sets each curve's rounding-noise floor
    ``NOISE_ULPS · eps · max|f|``: a curve whose range is within it is ``constant`` (see the
    module docstring).  ``resolution``: the finest precision at which flatness is judged
    (float32 by default; the floor uses the coarser of the two).

    Attributes: ``tol``, ``dim`` ("alpha" or "alpha,beta"), ``dtype``, ``resolution``,
    ``noise_ulps``,
    ``frac_constant`` (constant curves among those without NaN) and the fractions of the
    other curves (neither NaN nor constant) that are quasi-convex, quasi-concave, either,
    convex and concave (:data:`FRACTIONS`); NaN when no curve is left.
    """
    if not isinstance(da, xr.DataArray):
        raise LandscapeError(f"da: expected an xarray.DataArray, got {type(da).__name__}")
    tol = _check_tol(tol)
    dtype = _dtype_name(dtype, np.empty(0, da.dtype))
    resolution = _dtype_name(resolution, np.empty(0, da.dtype))
    floor = _coarser(dtype, resolution)  # the dtype whose eps sets the flatness floor
    dims = _parse_dims(da, dim)
    others = [d for d in da.dims if d not in dims]
    template = da.isel({d: 0 for d in dims}, drop=True)
    values = da.transpose(*others, *dims).values
    if len(dims) == 1:
        scores = _score_curves(values, _coordinate_positions(da, dims[0]), tol, floor)
        out_dims = tuple(others)
        line_coords = {}
    else:
        x0, x1 = (_coordinate_positions(da, d) for d in dims)
        kinds, offsets, lengths, scores = _line_scores(values, x0, x1, tol, floor)
        out_dims = (*others, "line")
        line_coords = {"line_kind": ("line", np.array(kinds)),
                       "line_offset": ("line", np.array(offsets, dtype=np.int64)),
                       "line_length": ("line", np.array(lengths, dtype=np.int64))}
    data_vars = {name: (out_dims, scores[name],
                        {"long_name": _SCORE_ATTRS[name][0], "description": _SCORE_ATTRS[name][1]})
                 for name in CONVEXITY_SCORES}
    ds = xr.Dataset(data_vars, coords=template.coords).assign_coords(line_coords)

    finite = ~np.isnan(scores["qcvx_barrier"])
    valid = finite & ~scores["constant"]  # constant curves are every shape at once: left out
    quasi_convex, quasi_concave = scores["quasi_convex"], scores["quasi_concave"]
    ds.attrs.update({
        "tol": tol,
        "dim": ",".join(map(str, dims)),
        "dtype": dtype,
        "resolution": resolution,
        "noise_ulps": NOISE_ULPS,
        "frac_constant": _fraction(scores["constant"], finite),
        "frac_quasi_convex": _fraction(quasi_convex, valid),
        "frac_quasi_concave": _fraction(quasi_concave, valid),
        "frac_either": _fraction(quasi_convex | quasi_concave, valid),
        "frac_convex": _fraction(scores["convex"], valid),
        "frac_concave": _fraction(scores["concave"], valid),
    })
    return ds


def add_scores(ds: xr.Dataset, var: str, dim: str | Sequence[str] = "alpha",
               tol: float = DEFAULT_TOL, dtype=None, resolution=RESOLUTION) -> xr.Dataset:
    """``ds`` with the scores of ``quasi_convexity(ds[var], dim, tol, dtype, resolution)``
    merged in.

    Each score becomes the variable ``f"{var}_{score}"`` (``loss_qcvx_barrier``,
    ``loss_constant``), each fraction the attribute ``f"{var}_{fraction}"``
    (``loss_frac_quasi_convex``, ``loss_frac_constant``); ``tol``, ``dim``, ``dtype``,
    ``resolution`` and ``noise_ulps`` go to ``f"{var}_convexity_tol"`` ... ``f"{var}_convexity_noise_ulps"``.
    ``dtype`` is the dtype ``ds[var]`` was evaluated in, when it was stored in a wider one.
    ``ds`` itself is not modified.
    """
    if not isinstance(ds, xr.Dataset):
        raise LandscapeError(f"ds: expected an xarray.Dataset, got {type(ds).__name__}")
    if var not in ds.data_vars:
        raise LandscapeError(f"var: {var!r} is not a variable of the dataset; allowed "
                             f"{', '.join(map(str, ds.data_vars)) or '(none)'}")
    scores = quasi_convexity(ds[var], dim=dim, tol=tol, dtype=dtype, resolution=resolution)
    merged = {}
    for name in CONVEXITY_SCORES:
        score = scores[name].copy()
        score.attrs["long_name"] = f"{score.attrs['long_name']} of {var}"
        merged[f"{var}_{name}"] = score
    out = ds.assign(merged)
    out.attrs = dict(ds.attrs)
    for name in FRACTIONS:
        out.attrs[f"{var}_{name}"] = scores.attrs[name]
    for name in ("tol", "dim", "dtype", "resolution", "noise_ulps"):
        out.attrs[f"{var}_convexity_{name}"] = scores.attrs[name]
    return out
