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


def lower_hull_gap(f: np.ndarray, x=None) -> np.ndarray:
    """``max_j (f_j − H(x_j))`` for each curve along the last axis of ``f``, H the lower convex
    hull of the points ``(x_j, f_j)``; ``x`` (strictly monotone, one position per sample)
    defaults to uniform positions.  An array of the shape of ``f`` without its last axis;
    0 for curves of fewer than 3 samples.  ``f`` must be finite.

    Andrew's monotone chain, run on all curves at once: sample j joins each curve's stack
    of hull vertices after the vertices it sees from below (those on or above the chord
    from the vertex before them to sample j) are popped.  Every sample is pushed once and
    popped at most once, so each curve costs O(n); the pops of one step are vectorised over
    the curves that still have a vertex to pop.  H is then the linear interpolation between
    the hull vertices on either side of each sample.

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
    rows = np.arange(len(g))
    stack = np.zeros(g.shape, dtype=np.intp)  # stack[r, :size[r]]: hull vertices so far
    size = np.ones(len(g), dtype=np.intp)
    for j in range(1, n):
        active = rows[size >= 2]
        while active.size:
            top = size[active]
            a, b = stack[active, top - 2], stack[active, top - 1]
            fa = g[active, a]
            # b is not a vertex when a -> b -> j turns clockwise or runs straight on.
            cross = (x[b] - x[a]) * (g[active, j] - fa) - (g[active, b] - fa) * (x[j] - x[a])
            active = active[cross <= 0]
            size[active] -= 1
            active = active[size[active] >= 2]
        stack[rows, size] = j
        size += 1
    vertex = np.zeros(g.shape, dtype=bool)
    held = np.arange(n) < size[:, None]
    vertex[np.nonzero(held)[0], stack[held]] = True
    index = np.arange(n)
    left = np.maximum.accumulate(np.where(vertex, index, 0), axis=-1)
    right = np.minimum.accumulate(np.where(vertex, index, n - 1)[:, ::-1], axis=-1)[:, ::-1]
    f_left, f_right = np.take_along_axis(g, left, -1), np.take_along_axis(g, right, -1)
    between = right > left
    weight = np.where(between, (x - x[left]) / np.where(between, x[right] - x[left], 1.0), 0.0)
    hull = f_left + weight * (f_right - f_left)
    return (g - hull).max(axis=-1).reshape(f.shape[:-1])
