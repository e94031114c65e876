"""Planted units for Q6: functions of the input with a known number of response
regions, built on a dataset's classes (see ``q6_tsne_vs_maxact.py``'s docstring)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

PLANTED_SEED = 1  # development draws used other seeds; this draw is held out


class PlantedUnits(nn.Module):
    """Unit j = max over its two detectors d of height[j, d] · detector_d(x), plus a
    small linear background; a detector is an RBF around ``centre`` (kind 0) or a
    ReLU of the projection on the unit vector ``centre`` above ``offset`` (kind 1),
    each divided by ``scale`` (its width for an RBF, its range above the offset
    for a ReLU).  A height of 0 switches a detector off.  The units are read at the
    module ``units``."""

    def __init__(self, kind, centre, scale, offset, height, background, norm):
        super().__init__()
        for name, value in dict(kind=kind, centre=centre, scale=scale, offset=offset,
                                height=height, background=background, norm=norm).items():
            self.register_parameter(name, nn.Parameter(torch.as_tensor(value, dtype=torch.float32),
                                                       requires_grad=False))
        self.units = nn.Identity()

    def forward(self, x):
        f = x.flatten(1)
        u, d = self.height.shape
        c = self.centre.reshape(u * d, -1)
        proj = f @ c.T
        sq = (f * f).sum(1, keepdim=True) - 2 * proj + (c * c).sum(1)
        scale, offset = self.scale.reshape(-1), self.offset.reshape(-1)
        rbf = torch.exp(-sq.clamp_min(0) / (2 * scale ** 2))
        ramp = torch.relu(proj - offset) / scale
        resp = torch.where(self.kind.reshape(-1) == 0, rbf, ramp) / self.norm.reshape(-1)
        resp = (resp * self.height.reshape(-1)).reshape(len(f), u, d).amax(dim=2)
        return self.units(resp + f @ self.background.T)


def planted_units(x: np.ndarray, labels: np.ndarray, count: int, seed: int = PLANTED_SEED):
    """``(module, info)``: ``count`` two-cluster units and ``count`` one-detector
    controls on the data ``x (N, D)`` (module docstring); ``info`` per unit: its
    group, detector kind, classes and second height r."""
    rng = np.random.default_rng(seed)
    n, dim = x.shape
    means = np.stack([x[labels == c].mean(0) for c in range(10)])
    radius = np.array([np.median(np.linalg.norm(x[labels == c] - means[c], axis=1))
                       for c in range(10)])
    direction = means - x.mean(0)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    size = 2 * count
    kind, centre = np.zeros((size, 2)), np.zeros((size, 2, dim))
    scale, offset, height, norm = (np.ones((size, 2)) for _ in range(4))
    offset[:] = 0.0
    info = []
    for j in range(size):
        two = j < count
        k = int(rng.integers(2))
        width = rng.uniform(0.6, 1.0)
        classes = rng.choice(10, 2, replace=False)
        r = rng.uniform(0.5, 0.9) if two else 0.0
        for d, c in enumerate(classes):
            kind[j, d] = k
            if k == 0:
                centre[j, d], scale[j, d] = means[c], width * radius[c]
                resp = np.exp(-np.sum((x - means[c]) ** 2, 1) / (2 * scale[j, d] ** 2))
            else:
                proj = x @ direction[c]
                centre[j, d], offset[j, d] = direction[c], np.quantile(proj, 1 - 0.1 * width)
                scale[j, d] = proj.max() - offset[j, d]
                resp = np.maximum(proj - offset[j, d], 0) / scale[j, d]
            norm[j, d] = resp.max()  # each detector peaks at 1 on the data
        height[j] = [1.0, r]
        info.append({"group": "two" if two else "one", "kind": "rbf" if k == 0 else "relu",
                     "class_a": int(classes[0]), "class_b": int(classes[1]) if two else -1,
                     "r": r, "width": width})
    v = rng.normal(size=(size, dim))
    background = 0.02 * v / np.linalg.norm(v, axis=1, keepdims=True) / x.std()
    return PlantedUnits(kind, centre, scale, offset, height, background, norm), info
