"""The lower convex hull of sampled curves, for many curves at once.

:func:`lower_hull_gap` gives, for each curve f_0 .. f_{n−1} sampled at x_0 < .. < x_{n−1}
along the last axis of an array, the largest height of a sample above the lower convex
hull H of the points (x_j, f_j)::

    max_j (f_j − H(x_j)),    H(x_j) = min over i ≤ j ≤ k of the chord (i, k) at x_j,

0 exactly for a convex sequence.  The hull is built with Andrew's monotone chain (A. M.
Andrew, "Another efficient algorithm for convex hulls in two dimensions", *Information
Processing Letters* 9, 1979), which needs samples sorted by x, as a curve's are: O(n) per
curve.  :mod:`landscape.convexity` turns the gap into the convexity excess.
"""

from __future__ import annotations

import numpy as np

# Curves from which the step-by-step vectorised chain overtakes one curve at a time (measured
# at 41 to 4 001 samples: between 64 and 256 curves).
VECTORISE_FROM = 128


def _turns_left(xa, fa, xb, fb, xj, fj):
    """a -> b -> j turns counterclockwise: b lies strictly below the chord from a to j."""
    return (xb - xa) * (fj - fa) - (fb - fa) * (xj - xa) > 0


def _vertices_one_by_one(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Hull vertices (a boolean mask like ``g``) of each row of ``g``, a plain loop per row."""
    vertex = np.zeros(g.shape, dtype=bool)
    xs = x.tolist()
    for row, curve in enumerate(g.tolist()):
        hull = [0]
        for j in range(1, len(curve)):
            while len(hull) >= 2 and not _turns_left(xs[hull[-2]], curve[hull[-2]], xs[hull[-1]],
                                                     curve[hull[-1]], xs[j], curve[j]):
                hull.pop()
            hull.append(j)
        vertex[row, hull] = True
    return vertex


def _vertices_vectorised(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Hull vertices of each row of ``g``, every step of the chain vectorised over the rows."""
    rows = np.arange(len(g))
    stack = np.zeros(g.shape, dtype=np.intp)  # stack[r, :size[r]]: hull vertices so far
    size = np.ones(len(g), dtype=np.intp)
    for j in range(1, g.shape[-1]):
        active = rows[size >= 2]
        while active.size:
            top = size[active]
            a, b = stack[active, top - 2], stack[active, top - 1]
            keep = _turns_left(x[a], g[active, a], x[b], g[active, b], x[j], g[active, j])
            active = active[~keep]
            size[active] -= 1
            active = active[size[active] >= 2]
        stack[rows, size] = j
        size += 1
    vertex = np.zeros(g.shape, dtype=bool)
    held = np.arange(g.shape[-1]) < size[:, None]
    vertex[np.nonzero(held)[0], stack[held]] = True
    return vertex


def lower_hull_gap(f: np.ndarray, x=None) -> np.ndarray:
    """``max_j (f_j − H(x_j))`` for each curve along the last axis of ``f``, H the lower convex
    hull of the points ``(x_j, f_j)``; ``x`` (strictly monotone, one position per sample)
    defaults to uniform positions.  An array of the shape of ``f`` without its last axis;
    0 for curves of fewer than 3 samples.  ``f`` must be finite.

    Andrew's monotone chain: sample j joins a curve's stack of hull vertices after the
    vertices it sees from below (those on or above the chord from the vertex before them
    to sample j) are popped.  Every sample is pushed once and popped at most once, so each
    curve costs O(n).  From ``VECTORISE_FROM`` curves on, each step runs on all curves at
    once (its pops vectorised over the curves that still have a vertex to pop); fewer
    curves run one by one, which saves numpy's per-call overhead on long curves.  Both
    evaluate the same expression in the same order, so they agree to the last bit.  H is
    then the linear interpolation between the hull vertices on either side of each sample.

    >>> float(lower_hull_gap(np.array([0.0, 3.0, 1.0, 2.0])))  # hull (0, 0), (2, 1): 0.5 at 1
    2.5
    >>> lower_hull_gap(np.array([[4.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]]), x=[0, 1, 3, 4])
    array([0., 1.])
    """
    n = f.shape[-1]
    if n < 3:
        return np.zeros(f.shape[:-1])
    x = np.arange(n, dtype=float) if x is None else np.asarray(x, dtype=float)
    if x[0] > x[-1]:  # the hull does not depend on the direction the samples are listed in
        x, f = x[::-1], f[..., ::-1]
    g = np.ascontiguousarray(f).reshape(-1, n)
    vertex = (_vertices_vectorised if len(g) >= VECTORISE_FROM else _vertices_one_by_one)(g, x)
    index = np.arange(n)
    left = np.maximum.accumulate(np.where(vertex, index, 0), axis=-1)
    right = np.minimum.accumulate(np.where(vertex, index, n - 1)[:, ::-1], axis=-1)[:, ::-1]
    f_left, f_right = np.take_along_axis(g, left, -1), np.take_along_axis(g, right, -1)
    between = right > left
    weight = np.where(between, (x - x[left]) / np.where(between, x[right] - x[left], 1.0), 0.0)
    hull = f_left + weight * (f_right - f_left)
    return (g - hull).max(axis=-1).reshape(f.shape[:-1])
