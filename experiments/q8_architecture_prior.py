"""Q8: is the architecture a prior?  Linear probes on frozen random features.

The claim under test (Jarrett et al. 2009, Saxe et al. 2011, Rahimi & Recht 2007):
random, untrained features of an architecture already carry much of what training
learns.  On digits (scikit-learn's, the toolkit's fixed held-out split) a logistic
regression is fitted on the standardised penultimate features (the layer feeding the
head, read with :func:`landscape.unit_activations`) of

* random networks at init (xavier, kaiming, default; the init's own biases),
* the same architecture trained with :func:`landscape.train.train` (default init,
  a few epochs of SGD),
* raw pixels (64 features), and
* random Fourier features of the pixels of the same dimension as each network's
  features (Rahimi & Recht 2007: cos(w·x + b), w ~ N(0, I/σ²), σ the median pairwise
  distance): "any random features" against the architecture's own;

for mlp and cnn at several widths and resnet18 (its one width), over seeds.  The
probe's inverse regularisation C is chosen by 3-fold CV on the train split for every
feature set alike; accuracy is measured once on the held-out split.

A prediction that could fail: if what random cnn/resnet features carry beyond random
Fourier features is the convolutional prior (local filters + spatial pooling), their
probes should lose less accuracy than the random-Fourier and pixel probes when the
test digits are shifted by one pixel (the probe itself is not refitted).

``--data shapes`` or ``--data mnist5k`` asks again on data whose pixels do not give
the class away (:mod:`landscape.shapes`: pixel 9-NN purity 0.134): every network reads
the images at their own size (3x32x32, 1x28x28), the trained networks are fitted
with Adam (2e-3, cosine schedule, batch 128) on the probe's own train images, and the
shift is an eighth of the image width (4 pixels of 32, 3 of 28; one of digits' 8).
Pass/fail rules, fixed before the run (:data:`CRITERIA`, Student's t intervals over
seeds; the pixel probe is one number):

- an architectural prior shows in the probes iff the random cnn's probe accuracy
  (every random init tested) lies above both the random Fourier features of the same
  dimension and the pixels, with non-overlapping 95 % intervals;
- the same rule for resnet18 and for the mlp, reported beside it (the mlp has no
  spatial prior: it is the control);
- the shift: the random cnn loses less accuracy than random Fourier features of the
  same dimension, with non-overlapping 95 % intervals.

Writes results/q8_architecture_prior/ (``--data shapes``:
results/q8_architecture_prior_shapes/; probes.csv, summary.json) and figures/q8_*.png
(``--data shapes``: figures/q8_shapes_*.png).

    python experiments/q8_architecture_prior.py [--quick | --full] [--out DIR]
        [--data digits|shapes|mnist5k]
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import ROOT, parse_args_with, save_figure
from scipy import stats

import landscape
from landscape.train import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q8_architecture_prior"
RANDOM_INITS = ("default", "xavier", "kaiming")
CS = np.logspace(-3, 1, 5)
SHIFT_PIXELS = 1  # in the digits' own 8x8 pixels (an eighth of the width on other data)
DATA = ("digits", "shapes", "mnist5k")
CI_LEVEL = 0.95
CRITERIA = {
    "prior": "an architectural prior shows in the probes iff the random cnn's probe accuracy "
             "(every random init tested) lies above both the random Fourier features of the "
             "same dimension and the pixels, with non-overlapping 95 % intervals",
    "prior_other_models": "the same rule for resnet18 and the mlp (the mlp, without a "
                          "spatial prior, is the control), reported beside it",
    "shift": "the random cnn loses less accuracy under the shift than random Fourier features "
             "of the same dimension, with non-overlapping 95 % intervals",
}
ADAM = dict(optimizer="adam", lr=2e-3, schedule="cosine", batch_size=128)

SIZES = {
    "quick": dict(seeds=2, samples=200, inits=("kaiming",), models={"mlp": [16], "cnn": [4]},
                  epochs={"mlp": 2, "cnn": 1}, in_shape={"mlp": (1, 8, 8), "cnn": (1, 8, 8)}),
    "default": dict(seeds=5, samples=None, inits=RANDOM_INITS,
                    models={"mlp": [32, 128, 512], "cnn": [4, 8, 16, 32], "resnet18": [None]},
                    epochs={"mlp": 10, "cnn": 8, "resnet18": 3},
                    in_shape={"mlp": (1, 8, 8), "cnn": (1, 16, 16), "resnet18": (1, 16, 16)}),
    "full": dict(seeds=10, samples=None, inits=RANDOM_INITS,
                 models={"mlp": [32, 128, 512, 2048], "cnn": [4, 8, 16, 32, 64], "resnet18": [None]},
                 epochs={"mlp": 20, "cnn": 15, "resnet18": 8},
                 in_shape={"mlp": (1, 8, 8), "cnn": (3, 32, 32), "resnet18": (3, 32, 32)}),
}


def _native(shape, models, **cfg) -> dict:
    return dict(cfg, models=models, in_shape={m: shape for m in models}, train_options=ADAM)


# Other data: every network reads the images at their own size.
DATA_SIZES = {
    data: {
        "quick": _native(shape, {"mlp": [16], "cnn": [4]}, seeds=2, samples=150, test_samples=150,
                         inits=("kaiming",), epochs={"mlp": 1, "cnn": 1}),
        "default": _native(shape, {"mlp": [128], "cnn": [32], "resnet18": [None]}, seeds=5,
                           samples=3000, test_samples=None, inits=("default", "kaiming"),
                           epochs={"mlp": 10, "cnn": 8, "resnet18": 2}),
        "full": _native(shape, {"mlp": [128, 512], "cnn": [8, 32, 64], "resnet18": [None]},
                        seeds=10, samples=None, test_samples=None, inits=RANDOM_INITS,
                        epochs={"mlp": 20, "cnn": 12, "resnet18": 6}),
    } for data, shape in (("shapes", (3, 32, 32)), ("mnist5k", (1, 28, 28)))
}


def config(data: str, size: str) -> dict:
    """The settings of ``size`` on ``data`` (digits: :data:`SIZES`)."""
    return dict(SIZES[size] if data == "digits" else DATA_SIZES[data][size], data=data)


def shift_of(width: int) -> int:
    """Pixels of the shift at an image width: an eighth of it (one of the digits' 8)."""
    return SHIFT_PIXELS * width // 8


# ----------------------------------------------------------------------------- features

_LOADED: dict = {}


def load(data: str, n, split: str, in_shape=None):
    """:func:`landscape.load_dataset`, each request loaded once per process (a subset of
    ``shapes`` is drawn from the whole generated split, so a second load costs as much)."""
    key = (data, n, split, None if in_shape is None else tuple(in_shape))
    if key not in _LOADED:
        _LOADED[key] = landscape.load_dataset(data, n=n, split=split, in_shape=in_shape)
    return _LOADED[key]


def shift_right(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Images moved ``pixels`` to the right, the vacated columns filled with the
    background value (the images' minimum, the standardised value of a blank pixel)."""
    out = torch.roll(x, pixels, dims=-1)
    out[..., :pixels] = x.min()
    return out


@torch.no_grad()
def features(model: torch.nn.Module, x: torch.Tensor, batch: int = 512) -> np.ndarray:
    """The penultimate features (the model's default layer: the one feeding the head)
    in eval mode, float64."""
    was = model.training
    model.eval()
    try:
        parts = [landscape.unit_activations(model, None, x[i:i + batch]) for i in range(0, len(x), batch)]
    finally:
        model.train(was)
    return torch.cat(parts).double().numpy()


def random_fourier(x_train: np.ndarray, x_test: np.ndarray, dim: int, seed: int):
    """Rahimi & Recht random Fourier features sqrt(2/D) cos(W x + b) of the RBF kernel
    exp(-|x - y|² / (2σ²)), σ the median pairwise distance of (a subset of) the train set."""
    rng = np.random.default_rng(seed)
    sub = x_train[rng.permutation(len(x_train))[:500]]
    d2 = np.stack([((sub - row) ** 2).sum(-1) for row in sub])  # row by row: little memory
    sigma = float(np.sqrt(np.median(d2[np.triu_indices(len(sub), 1)])))
    w = rng.standard_normal((x_train.shape[1], dim)) / sigma
    b = rng.uniform(0, 2 * np.pi, dim)
    scale = np.sqrt(2.0 / dim)
    return scale * np.cos(x_train @ w + b), scale * np.cos(x_test @ w + b), sigma


def arccos_kernel(x: np.ndarray, y: np.ndarray, weight_var: float) -> np.ndarray:
    """E_w[relu(w·x) relu(w·y)] for w ~ N(0, weight_var I) (Cho & Saul 2009, order 1):
    weight_var |x||y| (sin θ + (π − θ) cos θ) / (2π)."""
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    cos = np.clip((x @ y.T) / np.outer(nx, ny), -1.0, 1.0)
    theta = np.arccos(cos)
    return weight_var * np.outer(nx, ny) * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)


# ----------------------------------------------------------------------------- probes

def probe(f_train: np.ndarray, y_train: np.ndarray, tests: dict[str, np.ndarray],
          y_test: np.ndarray) -> dict:
    """Standardise, pick C by 3-fold CV on the train split, fit, score each test set."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=CS, cv=3, max_iter=500, tol=1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's deprecation notices and slow-convergence notes
        clf.fit(f_train, y_train)
    out = {"C": float(clf[-1].C_[0])}
    for name, f in tests.items():
        out[name] = float(clf.score(f, y_test))
    return out


def build(model: str, width, init: str, seed: int, in_shape) -> torch.nn.Module:
    options = {} if width is None else {"width": width}
    return landscape.build_model(model, init=init, seed=seed, in_shape=in_shape, **options)


def run(size: str, out: Path, figures: Path, data: str = "digits") -> dict:
    cfg = config(data, size)
    start, cpu = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    n_test = cfg.get("test_samples")
    base_x, base_y = load(data, cfg["samples"], "train")
    base_xt, base_yt = load(data, n_test, "test")
    y, yt = base_y.numpy(), base_yt.numpy()
    pix, pix_t = base_x.flatten(1).numpy().astype(float), base_xt.flatten(1).numpy().astype(float)
    pix_shift = shift_right(base_xt, shift_of(base_xt.shape[-1])).flatten(1).numpy().astype(float)

    r = probe(pix, y, {"test": pix_t, "shifted": pix_shift}, yt)
    rows.append({"model": "pixels", "width": None, "dim": pix.shape[1], "state": "pixels", "seed": 0, **r})
    print(f"pixels: {r}", flush=True)

    dims_seen: set[int] = set()
    for model_name, widths in cfg["models"].items():
        in_shape = cfg["in_shape"][model_name]
        # at the data's own size: the images loaded above (shapes is not generated again)
        native = data != "digits" and tuple(in_shape) == tuple(base_x.shape[1:])
        x, _ = load(data, cfg["samples"], "train", None if native else in_shape)
        xt, _ = load(data, n_test, "test", None if native else in_shape)
        xt_shift = shift_right(xt, shift_of(in_shape[-1]))
        for width in widths:
            for seed in range(cfg["seeds"]):
                states = {}
                for init in cfg["inits"]:
                    states[f"random-{init}"] = build(model_name, width, init, seed, in_shape)
                t0 = time.time()
                trained = build(model_name, width, "default", seed, in_shape)
                history, _ = train(trained, x, base_y, xt, base_yt, epochs=cfg["epochs"][model_name],
                                   seed=seed, **cfg.get("train_options", {}))
                train_s = time.time() - t0
                states["trained"] = trained
                for state, model in states.items():
                    f = features(model, x)
                    r = probe(f, y, {"test": features(model, xt), "shifted": features(model, xt_shift)}, yt)
                    row = {"model": model_name, "width": width, "dim": f.shape[1], "state": state,
                           "seed": seed, **r}
                    if state == "trained":
                        row.update(train_seconds=train_s,
                                   network_test_accuracy=history["test_accuracy"][-1])
                    rows.append(row)
                dim = rows[-1]["dim"]
                print(f"{model_name} width {width} seed {seed}: " + ", ".join(
                    f"{row['state']} {row['test']:.3f}" for row in rows[-len(states):]), flush=True)
                if (dim, seed) not in dims_seen:
                    dims_seen.add((dim, seed))
                    a, b, sigma = random_fourier(pix, np.concatenate([pix_t, pix_shift]), dim, seed)
                    r = probe(a, y, {"test": b[:len(pix_t)], "shifted": b[len(pix_t):]}, yt)
                    rows.append({"model": "rff", "width": None, "dim": dim, "state": "rff", "seed": seed,
                                 "sigma": sigma, **r})
    summary = summarise(rows, cfg)
    summary["criteria"] = CRITERIA
    summary["verdicts"] = verdicts(rows, summary)
    summary["seconds"], summary["cpu_seconds"] = time.time() - start, time.process_time() - cpu
    with open(out / "probes.csv", "w") as fh:
        keys = sorted({k for row in rows for k in row})
        fh.write(",".join(keys) + "\n")
        for row in rows:
            fh.write(",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + "\n")
    prefix = "q8" if data == "digits" else f"q8_{data}"
    summary["figures"] = [str(plot(rows, summary, figures / f"{prefix}_probe_accuracy.png")),
                          str(plot_shift(rows, figures / f"{prefix}_shift.png", data))]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# ----------------------------------------------------------------------------- summary

def _stat(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def interval(values, level: float = CI_LEVEL) -> dict:
    """Mean and Student's t interval of ``values`` (one per seed)."""
    v = np.asarray(values, float)
    mean = float(v.mean())
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) \
        if len(v) > 1 else 0.0
    return {"mean": mean, "ci": [mean - half, mean + half], "n": int(len(v))}


def verdicts(rows: list[dict], summary: dict) -> dict:
    """The rules of :data:`CRITERIA`, per model, width and random init: the probe's
    intervals against random Fourier features of the same dimension and the pixels,
    and the shift's loss against random Fourier features'."""
    pixels = summary["pixels"]["test"]
    cells = []
    for entry in summary["models"]:
        dim = entry["dim"]
        rff = [r for r in rows if r["state"] == "rff" and r["dim"] == dim]
        rff_test = interval([r["test"] for r in rff])
        rff_drop = interval([r["test"] - r["shifted"] for r in rff])
        for init in summary["config"]["inits"]:
            rs = [r for r in rows if r["model"] == entry["model"] and r["width"] == entry["width"]
                  and r["state"] == f"random-{init}"]
            test = interval([r["test"] for r in rs])
            drop = interval([r["test"] - r["shifted"] for r in rs])
            cells.append({"model": entry["model"], "width": entry["width"], "dim": dim, "init": init,
                          "test": test, "rff": rff_test, "pixels": pixels,
                          "above": bool(test["ci"][0] > rff_test["ci"][1] and test["ci"][0] > pixels),
                          "drop": drop, "rff_drop": rff_drop,
                          "shift_smaller": bool(drop["ci"][1] < rff_drop["ci"][0])})
    out = {"cells": cells}
    for model in dict.fromkeys(c["model"] for c in cells):
        mine = [c for c in cells if c["model"] == model]
        out[model] = {"prior": all(c["above"] for c in mine),
                      "shift": all(c["shift_smaller"] for c in mine)}
    if "cnn" in out:
        out["verdict"] = (f"an architectural prior shows in the probes on {summary['config']['data']}"
                          if out["cnn"]["prior"] else
                          f"no architectural prior shows in the probes on {summary['config']['data']}")
    return out


def summarise(rows: list[dict], cfg: dict) -> dict:
    pixels = next(r for r in rows if r["state"] == "pixels")
    summary: dict = {"config": {k: v for k, v in cfg.items() if k != "models"} | {
        "models": {k: [w for w in v] for k, v in cfg["models"].items()}},
        "pixels": {"test": pixels["test"], "shifted": pixels["shifted"], "C": pixels["C"]},
        "rff": {}, "models": []}
    for dim in sorted({r["dim"] for r in rows if r["state"] == "rff"}):
        sel = [r for r in rows if r["state"] == "rff" and r["dim"] == dim]
        summary["rff"][str(dim)] = {"test": _stat([r["test"] for r in sel]),
                                   "shifted": _stat([r["shifted"] for r in sel])}
    for model_name, widths in cfg["models"].items():
        for width in widths:
            sel = [r for r in rows if r["model"] == model_name and r["width"] == width]
            entry = {"model": model_name, "width": width, "dim": sel[0]["dim"]}
            trained = {r["seed"]: r for r in sel if r["state"] == "trained"}
            rff = {r["seed"]: r for r in rows if r["state"] == "rff" and r["dim"] == sel[0]["dim"]}
            for state in ("trained", *[f"random-{i}" for i in cfg["inits"]]):
                rs = [r for r in sel if r["state"] == state]
                e = {"test": _stat([r["test"] for r in rs]), "shifted": _stat([r["shifted"] for r in rs]),
                     "shift_drop": _stat([r["test"] - r["shifted"] for r in rs]),
                     "C": sorted({r["C"] for r in rs})}
                if state != "trained":
                    # share of the trained-minus-pixels gain the random features already give, per seed
                    gain = [(r["test"] - pixels["test"]) / (trained[r["seed"]]["test"] - pixels["test"])
                            for r in rs if trained[r["seed"]]["test"] != pixels["test"]]
                    e["share_of_gain_over_pixels"] = _stat(gain) if gain else None
                    # the same from the means over seeds (steadier when the gain is small)
                    mean_trained = np.mean([r["test"] for r in trained.values()])
                    e["share_of_mean_gain"] = float((e["test"]["mean"] - pixels["test"])
                                                    / (mean_trained - pixels["test"]))
                    e["minus_rff"] = _stat([r["test"] - rff[r["seed"]]["test"] for r in rs])
                else:
                    e["network_test_accuracy"] = _stat([r["network_test_accuracy"] for r in rs])
                    e["train_seconds"] = _stat([r["train_seconds"] for r in rs])
                entry[state] = e
            summary["models"].append(entry)
    return summary


# ----------------------------------------------------------------------------- figures

STYLE = {"trained": ("k", "o"), "random-default": ("C0", "s"), "random-xavier": ("C1", "^"),
         "random-kaiming": ("C2", "v"), "rff": ("C3", "x")}


def plot(rows: list[dict], summary: dict, path: Path) -> Path:
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if m not in ("pixels", "rff")]
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.4), sharey=True, squeeze=False)
    for ax, model_name in zip(axes[0], models):
        entries = [e for e in summary["models"] if e["model"] == model_name]
        dims = [e["dim"] for e in entries]
        for state in ("trained", *[f"random-{i}" for i in summary["config"]["inits"]]):
            m = [e[state]["test"]["mean"] for e in entries]
            s = [e[state]["test"]["std"] for e in entries]
            colour, marker = STYLE[state]
            ax.errorbar(dims, m, yerr=s, color=colour, marker=marker, capsize=2, label=state, lw=1)
        m = [summary["rff"][str(d)]["test"]["mean"] for d in dims]
        s = [summary["rff"][str(d)]["test"]["std"] for d in dims]
        ax.errorbar(dims, m, yerr=s, color="C3", marker="x", ls="--", capsize=2,
                    label="random Fourier (same dim)", lw=1)
        ax.axhline(summary["pixels"]["test"], color="grey", ls=":", label="pixels")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("feature dimension")
        ax.set_title(model_name + ("" if len(dims) > 1 else f" (width fixed, {dims[0]} features)"),
                     fontsize=9)
    axes[0][0].set_ylabel(f"held-out linear-probe accuracy ({summary['config']['data']})")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    return save_figure(fig, path, dpi=110, tight=True)


def plot_shift(rows: list[dict], path: Path, data: str = "digits") -> Path:
    """Accuracy lost under a one-pixel shift of the test digits against the feature
    dimension, one panel per architecture, one line per kind of features (each width
    apart), pixels and random Fourier features of the same dimension in grey."""
    def drop(select) -> tuple[float, float]:
        d = [r["test"] - r["shifted"] for r in rows if select(r)]
        return float(np.mean(d)), float(np.std(d, ddof=1)) if len(d) > 1 else 0.0

    models = [m for m in dict.fromkeys(r["model"] for r in rows) if m not in ("pixels", "rff")]
    pixel_drop = drop(lambda r: r["model"] == "pixels")[0]
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.9), squeeze=False,
                             layout="constrained")
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        dims = sorted({r["dim"] for r in mine})
        for k, state in enumerate(dict.fromkeys(r["state"] for r in mine)):
            stats = [drop(lambda r, s=state, d=d, m=model: r["model"] == m and r["state"] == s
                          and r["dim"] == d) for d in dims]
            shifted = [d * 2 ** (0.06 * (k - 1.5)) for d in dims]  # bars side by side
            ax.errorbar(shifted, [m for m, _ in stats], yerr=[e for _, e in stats], marker="o",
                        ms=4, capsize=2, color=f"C{k}", label=state)
        rff = [drop(lambda r, d=d: r["model"] == "rff" and r["dim"] == d) for d in dims]
        ax.errorbar(dims, [m for m, _ in rff], yerr=[e for _, e in rff], marker="s", ms=4,
                    capsize=2, color="grey", ls="--", label="random Fourier (same D)")
        ax.axhline(pixel_drop, color="grey", ls=":", label="pixels")
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set(xlabel="feature dimension D", ylabel="accuracy lost, 1-pixel shift", title=model)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=7)
    fig.suptitle(f"probe accuracy lost when the test images ({data}) move an eighth of their "
                 "width right (mean ± std over seeds)", fontsize=9)
    return save_figure(fig, path, dpi=110)


def main(argv=None) -> dict:
    def options(parser):
        parser.add_argument("--data", choices=DATA, default="digits",
                            help="the images (default digits; shapes and mnist5k read at their own size)")

    size, out, figures, ns = parse_args_with(__doc__, NAME, argv, options)
    if ns.data != "digits" and out == ROOT / "results" / NAME:
        out = ROOT / "results" / f"{NAME}_{ns.data}"
    print("criteria (fixed before the run):")
    for key, text in CRITERIA.items():
        print(f"  {key}: {text}")
    summary = run(size, out, figures, ns.data)
    print(f"pixels: {summary['pixels']}")
    for e in summary["models"]:
        line = f"{e['model']} width {e['width']} (dim {e['dim']}):"
        for state in ("trained", *[f"random-{i}" for i in summary["config"]["inits"]]):
            t = e[state]["test"]
            line += f" {state} {t['mean']:.3f}±{t['std']:.3f}"
            share = e[state].get("share_of_gain_over_pixels")
            if share:
                line += (f" (share {share['mean']:.2f}±{share['std']:.2f}, of means "
                         f"{e[state]['share_of_mean_gain']:.2f})")
        rff = summary["rff"][str(e["dim"])]["test"]
        line += f"; rff {rff['mean']:.3f}±{rff['std']:.3f}"
        print(line)
    for c in summary["verdicts"]["cells"]:
        print(f"{c['model']} width {c['width']} random-{c['init']}: probe {c['test']['mean']:.3f} "
              f"[{c['test']['ci'][0]:.3f}, {c['test']['ci'][1]:.3f}] vs random Fourier "
              f"{c['rff']['mean']:.3f} [{c['rff']['ci'][0]:.3f}, {c['rff']['ci'][1]:.3f}], pixels "
              f"{c['pixels']:.3f}: above {c['above']}; shift loss {c['drop']['mean']:.3f} vs "
              f"{c['rff_drop']['mean']:.3f}: smaller {c['shift_smaller']}")
    print("verdict:", summary["verdicts"].get("verdict", "no cnn in this run"))
    print(f"{summary['seconds']:.1f} s wall, {summary['cpu_seconds']:.1f} s CPU; results in {out}")
    return summary


if __name__ == "__main__":
    main()
