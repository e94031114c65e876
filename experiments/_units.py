"""What the unit experiments (Q5, Q6) share: the random and trained networks on
digits, their units' activations with the same BatchNorm statistics as
:func:`landscape.maxact` uses, dead units, the label purity of top examples,
AUROC and summary statistics.

Every network reads digits at their own 8x8 resolution, so the units of mlp, cnn
and resnet18 are functions on one input space (64 pixels, one value box) and
distances to the data mean the same for all three.  The random network of a
seed is the trained network's own initialisation (default init, the same seed).
"""

from __future__ import annotations

import time

import _common
import numpy as np
import torch
from _common import stat  # noqa: F401  (the experiments import it from here)
from torch import nn

import landscape
from landscape.train import train
from landscape.view import batch_norms, model_view

IN_SHAPE = (1, 8, 8)
EPOCHS = {"mlp": 10, "cnn": 8, "resnet18": 3}
# Units whose activation varies by less than this (relative to its size) over the
# data are dead: constant, so every metric of them is an artefact.
DEAD_TOL = 1e-6
K_NEIGHBORS = 10  # the kNN graph of the metrics (Moran's I, lipschitz, Jaccard)


def digits(n: int | None = None, seed: int = 0):
    """``(x, y, x_test, y_test)``: the toolkit's digits split at 8x8 (``n`` train samples)."""
    x, y = landscape.load_dataset("digits", n=n, split="train", seed=seed, in_shape=IN_SHAPE)
    xt, yt = landscape.load_dataset("digits", split="test", in_shape=IN_SHAPE)
    return x, y, xt, yt


def build(name: str, seed: int) -> nn.Module:
    return landscape.build_model(name, init="default", seed=seed, in_shape=IN_SHAPE)


def random_and_trained(name: str, seed: int, data, epochs: int | None = None) -> tuple[dict, dict]:
    """``({"random": net, "trained": net}, info)``: a network at init and the same
    init trained with :func:`landscape.train.train` (SGD, the toolkit's defaults);
    ``info`` holds the trained held-out accuracy and the training CPU time."""
    x, y, xt, yt = data
    random = build(name, seed)
    trained = build(name, seed)
    start = time.process_time()
    history, _ = train(trained, x, y, xt, yt, epochs=epochs or EPOCHS[name], seed=seed)
    info = {"test_accuracy": float(history["test_accuracy"][-1]),
            "train_cpu_s": time.process_time() - start}
    return {"random": random, "trained": trained}, info


def maxact_options(cfg: dict, n: int) -> dict:
    """The :func:`landscape.maxact.maxact` settings of an experiment's size ``cfg`` on
    ``n`` samples; a batch of at least ``n`` recomputes BatchNorm statistics in one
    pass over the data."""
    return dict(top_k=cfg["top_k"], restarts=cfg["restarts"], steps=cfg["steps"],
                k_neighbors=K_NEIGHBORS, batch_size=max(2048, n))


def norms_of(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return batch_norms(model)


def evaluated(model: nn.Module, x: torch.Tensor, bn: str = "auto") -> nn.Module:
    """``model`` as the analyses evaluate it (:func:`landscape.view.model_view`):
    eval mode, with BatchNorm statistics as ``bn`` says (``auto``: recomputed
    over ``x`` for an untrained model, its own otherwise)."""
    return model_view(model, bn=bn, data=x)


def activations(model: nn.Module, x: torch.Tensor, units=None, layer: str | None = None,
                bn: str = "auto") -> np.ndarray:
    """Activations ``(N, U)`` (float64) of ``units`` (all when None) of ``layer`` (the
    model's default) on ``x``, evaluated as :func:`evaluated` says."""
    view = evaluated(model, x, bn)
    with torch.no_grad():
        a = landscape.unit_activations(view, layer, x, None if units is None else list(units))
    return a.double().numpy()


def dead(act: np.ndarray) -> np.ndarray:
    """Per column of ``act (N, U)``: True where the unit is constant over the data."""
    spread = act.max(axis=0) - act.min(axis=0)
    return spread <= DEAD_TOL * np.maximum(1.0, np.abs(act).max(axis=0))


def live_units(act: np.ndarray, count: int) -> list[int]:
    """The first ``count`` units that are not dead (fewer if the layer has fewer)."""
    return [int(u) for u in np.nonzero(~dead(act))[0][:count]]


def purity(labels: np.ndarray, topk_index: np.ndarray) -> np.ndarray:
    """Per unit (rows of ``topk_index (U, k)``): the share of its top-k examples
    that carry the most common label among them."""
    labels = np.asarray(labels)
    out = []
    for row in np.asarray(topk_index):
        counts = np.bincount(labels[row])
        out.append(counts.max() / len(row))
    return np.asarray(out, dtype=float)


def auroc(positive, negative) -> float:
    """P(a positive scores above a negative) + ½ P(tie): the Mann-Whitney AUROC.
    NaNs are dropped; NaN when either side is empty."""
    p = np.asarray(positive, dtype=float)
    q = np.asarray(negative, dtype=float)
    p, q = p[np.isfinite(p)], q[np.isfinite(q)]
    if not len(p) or not len(q):
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([p, q]))
    u = ranks[:len(p)].sum() - len(p) * (len(p) + 1) / 2
    return float(u / (len(p) * len(q)))


def save_figure(fig, path, dpi: int = 110):
    """Lay out, write and close ``fig``; returns ``path``."""
    return _common.save_figure(fig, path, dpi=dpi, tight=True)


def fmt(s: dict, digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
