"""Q9: can a random network rank architectures?

Saxe et al. (2011) and Pinto et al. (2009) chose architectures by how well a linear
classifier does on their *random-weight* features.  If that works, a measurement of
untrained networks helps design trained ones.  On ``shapes`` (32×32×3, 10 kinds,
pixel 9-NN purity 0.134 against a chance of 0.10, so the ranking is not decided by
the pixels) every architecture of :data:`ARCHITECTURES` (depth, width, pooling,
skip/no skip, activation; an mlp beside the convolutional nets) is measured twice:

* **random**: at PyTorch's default initialisation (init seeds ``0 .. seeds-1``), a
  ridge probe (:func:`probe`) on the penultimate features (the layer feeding the
  head: the global average of the last stage, the mlp's last hidden layer), first
  mapped to :data:`PROBE_DIM` features by a fixed Gaussian projection, so that every
  architecture is probed at the same feature count; the probe on the native features
  (their count differs) is reported beside it;
* **trained**: the same architecture from the same initialisations (seeds
  ``0 .. trained_seeds-1``) trained at a fixed small budget (Adam, lr 2e-3, cosine
  schedule, batch 32, ``epochs`` epochs on the ``train`` images), its own test
  accuracy.

Both sides use the first ``train`` training images and the first ``test`` test images
of ``shapes`` (:func:`landscape.shapes.generate`), standardised per channel by the
training subset's statistics.  The rankings are compared by Spearman's ρ of the
per-architecture means; its 95 % intervals come from a bootstrap that resamples the
seeds within every architecture (each side apart), and from one that first resamples
the architectures too (the designs as a sample of designs).

Pass/fail rules are fixed in :data:`CRITERIA` before the run.  Confounds measured
beside them: parameter count (does it rank the trained networks as well?), the
native feature count, dead (constant) penultimate units of the random networks, and
under-training (the trained ranking at half the budget against the full budget).

Writes results/q9_architecture_ranking/ (runs.csv, summary.json) and
figures/q9_ranking.png.

    python experiments/q9_architecture_ranking.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import parse_args, save_figure, stat, timing, write_summary
from torch import nn

from landscape.shapes import generate
from landscape.train import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q9_architecture_ranking"
PROBE_DIM = 64  # every random network's features are probed at this count
ALPHAS = np.logspace(-2, 4, 13)  # the ridge probe's penalties, chosen by leave-one-out CV
TRAINING = dict(optimizer="adam", lr=2e-3, schedule="cosine", batch_size=32)
BOOTSTRAP = 2000

# ----------------------------------------------------------------------------- criteria

# Written before the run.  rho is Spearman's rank correlation between the architectures'
# mean random-probe accuracy (at PROBE_DIM features) and their mean trained accuracy.
CRITERIA = {
    "predicts": "rho > 0 and the 95 % interval of the seed bootstrap (seeds resampled "
                "within each architecture) excludes 0",
    "predicts_across_designs": "rho > 0 and the 95 % interval of the bootstrap over "
                               "architectures and seeds excludes 0",
    "beats_parameter_count": "rho - rho(parameter count, trained) > 0 with the 95 % "
                             "interval of the seed bootstrap of the difference excluding 0",
}

# ----------------------------------------------------------------------------- architectures

# kind cnn: `stages` stages of `width * 2**s` channels, each one 3x3 conv (+ a block of
# `extra` pairs of 3x3 convs, with an identity shortcut when `skip`), then 2x downsampling
# by `pool` (max / avg pooling, or `stride`: the stage's first conv has stride 2); the
# features are the global average of the last stage.  kind mlp: `stages` hidden layers of
# `width` units.
BASE = dict(kind="cnn", stages=3, width=16, extra=0, pool="max", skip=False, act="relu")
ARCHITECTURES = {
    "cnn3-w16": {},
    "cnn3-w32": dict(width=32),
    "cnn3-w16-avgpool": dict(pool="avg"),
    "cnn3-w16-stride": dict(pool="stride"),
    "cnn3-w16-tanh": dict(act="tanh"),
    "cnn3-w16-gelu": dict(act="gelu"),
    "cnn1-w64": dict(stages=1, width=64),
    "cnn2-w32": dict(stages=2, width=32),
    "cnn9-w16-noskip": dict(extra=1),
    "cnn9-w16-skip": dict(extra=1, skip=True),
    "mlp2-w256": dict(kind="mlp", stages=2, width=256),
}
QUICK_ARCHITECTURES = {
    "cnn2-w4": dict(stages=2, width=4),
    "cnn1-w8-tanh": dict(stages=1, width=8, act="tanh"),
    "cnn2-w4-skip": dict(stages=2, width=4, extra=1, skip=True),
    "mlp1-w32": dict(kind="mlp", stages=1, width=32),
}

SIZES = {
    "quick": dict(architectures=QUICK_ARCHITECTURES, seeds=2, trained_seeds=2, train=300,
                  test=200, epochs=2, probe_dim=8),
    "default": dict(architectures=ARCHITECTURES, seeds=5, trained_seeds=3, train=6000,
                    test=2000, epochs=5, probe_dim=PROBE_DIM),
    "full": dict(architectures=ARCHITECTURES, seeds=10, trained_seeds=5, train=20_000,
                 test=2000, epochs=12, probe_dim=PROBE_DIM),
}

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class Residual(nn.Module):
    """``act(x + f(x))`` with ``skip``, else ``act(f(x))``; ``f`` = conv, act, conv."""

    def __init__(self, channels: int, act: str, skip: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act1, self.act2 = ACTIVATIONS[act](), ACTIVATIONS[act]()
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act1(self.conv1(x)))
        return self.act2(x + out if self.skip else out)


class Net(nn.Module):
    """One architecture of the study: ``body`` maps the images to the penultimate
    features (:meth:`features`), ``head`` those to the 10 logits."""

    def __init__(self, spec: dict, in_shape=(3, 32, 32), num_classes: int = 10):
        super().__init__()
        spec = BASE | spec
        act = ACTIVATIONS[spec["act"]]
        layers: list[nn.Module] = []
        if spec["kind"] == "mlp":
            layers.append(nn.Flatten())
            fan_in = int(np.prod(in_shape))
            for _ in range(spec["stages"]):
                layers += [nn.Linear(fan_in, spec["width"]), act()]
                fan_in = spec["width"]
        else:
            fan_in = in_shape[0]
            for s in range(spec["stages"]):
                c = spec["width"] * 2 ** s
                stride = 2 if spec["pool"] == "stride" else 1
                layers += [nn.Conv2d(fan_in, c, 3, stride=stride, padding=1), act()]
                layers += [Residual(c, spec["act"], spec["skip"]) for _ in range(spec["extra"])]
                if spec["pool"] != "stride":
                    layers.append(nn.MaxPool2d(2) if spec["pool"] == "max" else nn.AvgPool2d(2))
                fan_in = c
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(fan_in, num_classes)
        self.n_features = fan_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 500) -> np.ndarray:
        was = self.training
        self.eval()
        try:
            return torch.cat([self.body(x[i:i + batch]) for i in range(0, len(x), batch)]).double().numpy()
        finally:
            self.train(was)


def build(spec: dict, seed: int) -> Net:
    """The architecture at PyTorch's default initialisation drawn under ``seed``."""
    torch.manual_seed(seed)
    return Net(spec)


def n_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------- data, probe

def load(n_train: int, n_test: int):
    """The first ``n_train`` / ``n_test`` images of shapes' two splits (32 px, seed 0),
    standardised per channel by the training subset's mean and std."""
    x, y = generate("train", 32, n=n_train)
    xt, yt = generate("test", 32, n=n_test)
    mean, std = x.mean(axis=(0, 2, 3))[None, :, None, None], x.std(axis=(0, 2, 3))[None, :, None, None]
    return (torch.from_numpy((x - mean) / std), torch.from_numpy(y),
            torch.from_numpy((xt - mean) / std), torch.from_numpy(yt))


def project(f_train: np.ndarray, f_test: np.ndarray, dim: int, seed: int = 0):
    """Both feature sets standardised (by the train set; constant units stay 0) and mapped
    to ``dim`` features by one Gaussian matrix ``N(0, 1/dim)`` drawn from ``(seed, native
    count)``: a fixed map for every network of one feature count."""
    mean, std = f_train.mean(0), f_train.std(0)
    std = np.where(std > 0, std, 1.0)
    a, b = (f_train - mean) / std, (f_test - mean) / std
    w = np.random.default_rng([seed, f_train.shape[1]]).standard_normal((f_train.shape[1], dim))
    w /= np.sqrt(dim)
    return a @ w, b @ w


def probe(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> dict:
    """Held-out accuracy of a ridge classifier (one-vs-rest least squares on ±1 targets,
    penalty from :data:`ALPHAS` by leave-one-out CV on the train set) on the standardised
    features."""
    import warnings

    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=ALPHAS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(f_train, y_train)
    return {"accuracy": float(clf.score(f_test, y_test)), "alpha": float(clf[-1].alpha_)}


def dead_fraction(f: np.ndarray, tol: float = 1e-8) -> float:
    """Share of feature columns that are constant over the samples (std ≤ ``tol`` × the
    largest column std)."""
    std = f.std(0)
    return float((std <= tol * max(std.max(), 1e-300)).mean())


# ----------------------------------------------------------------------------- statistics

def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ of ``a`` and ``b`` along the last axis (ties get their mean rank);
    leading axes are batches."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(-1) * (rb ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(-1) / den


def seed_means(values: np.ndarray, rng: np.random.Generator, b: int) -> np.ndarray:
    """``b`` bootstrap means of ``values`` (architectures × seeds; NaN = missing),
    resampling each architecture's seeds: shape ``(b, architectures)``."""
    out = np.empty((b, len(values)))
    for i, row in enumerate(values):
        v = row[np.isfinite(row)]
        out[:, i] = v[rng.integers(0, len(v), (b, len(v)))].mean(1)
    return out


def bootstrap_rho(random: np.ndarray, trained: np.ndarray, params: np.ndarray,
                  b: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Spearman's ρ of the architectures' mean random and trained accuracies (rows:
    architectures, columns: seeds) with 95 % percentile intervals of the seed bootstrap,
    of the bootstrap over architectures and seeds, and of ``ρ − ρ(params, trained)``."""
    rng = np.random.default_rng(seed)
    mr, mt = np.nanmean(random, 1), np.nanmean(trained, 1)
    rho = float(spearman(mr, mt))
    rho_params = float(spearman(params.astype(float), mt))
    br, bt = seed_means(random, rng, b), seed_means(trained, rng, b)
    seeds = spearman(br, bt)
    diff = seeds - spearman(np.broadcast_to(params.astype(float), bt.shape), bt)
    pick = rng.integers(0, len(mr), (b, len(mr)))
    br2, bt2 = seed_means(random, rng, b), seed_means(trained, rng, b)
    designs = spearman(np.take_along_axis(br2, pick, 1), np.take_along_axis(bt2, pick, 1))

    def ci(v):
        v = v[np.isfinite(v)]
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]

    return {"rho": rho, "ci_seeds": ci(seeds), "ci_designs": ci(designs),
            "rho_params": rho_params, "diff_params": rho - rho_params, "ci_diff_params": ci(diff),
            "bootstrap": b}


def mean_ci(values) -> dict:
    """Mean, std and the t interval ``mean ± t(0.975, n−1) s/√n`` of the finite values."""
    from scipy.stats import t

    s = stat(values)
    half = float(t.ppf(0.975, s["n"] - 1) * s["std"] / np.sqrt(s["n"])) if s["n"] > 1 else 0.0
    return s | {"ci": [s["mean"] - half, s["mean"] + half]}


def verdicts(r: dict) -> dict:
    """Each claim of :data:`CRITERIA` as ``pass`` / ``fail`` with its numbers."""
    tests = {"predicts": r["rho"] > 0 and r["ci_seeds"][0] > 0,
             "predicts_across_designs": r["rho"] > 0 and r["ci_designs"][0] > 0,
             "beats_parameter_count": r["diff_params"] > 0 and r["ci_diff_params"][0] > 0}
    return {k: {"rule": CRITERIA[k], "pass": bool(v)} for k, v in tests.items()}


# ----------------------------------------------------------------------------- run

def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    start, cpu_start = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    x, y, xt, yt = load(cfg["train"], cfg["test"])
    yn, ytn = y.numpy(), yt.numpy()
    rows: list[dict] = []
    for name, spec in cfg["architectures"].items():
        for seed in range(cfg["seeds"]):
            model = build(spec, seed)
            f, ft = model.features(x), model.features(xt)
            a, b = project(f, ft, cfg["probe_dim"])
            row = {"arch": name, "side": "random", "seed": seed, "params": n_params(model),
                   "native_dim": f.shape[1], "dead": dead_fraction(f)}
            r = probe(a, yn, b, ytn)
            row.update(accuracy=r["accuracy"], alpha=r["alpha"])
            r = probe(f, yn, ft, ytn)
            row.update(native_accuracy=r["accuracy"], native_alpha=r["alpha"])
            rows.append(row)
        for seed in range(cfg["trained_seeds"]):
            model = build(spec, seed)
            t0, c0 = time.time(), time.process_time()
            history, _ = train(model, x, y, xt, yt, epochs=cfg["epochs"], seed=seed, **TRAINING)
            acc = history["test_accuracy"]
            rows.append({"arch": name, "side": "trained", "seed": seed, "params": n_params(model),
                         "accuracy": acc[-1], "half_budget_accuracy": acc[len(acc) // 2 - 1]
                         if len(acc) > 1 else acc[-1], "train_loss": history["train_loss"][-1],
                         "train_seconds": time.time() - t0, "train_cpu_seconds": time.process_time() - c0})
        mine = [r for r in rows if r["arch"] == name]
        print(f"{name}: random {np.mean([r['accuracy'] for r in mine if r['side'] == 'random']):.3f}"
              f" trained {np.mean([r['accuracy'] for r in mine if r['side'] == 'trained']):.3f}"
              f" ({np.mean([r['train_seconds'] for r in mine if r['side'] == 'trained']):.1f} s a net)",
              flush=True)
    summary = summarise(rows, cfg)
    summary = timing(summary, start, cpu_start)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "runs.csv", "w") as fh:
        fh.write(",".join(keys) + "\n")
        for row in rows:
            fh.write(",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + "\n")
    summary["figures"] = [str(plot(summary, figures / "q9_ranking.png"))]
    write_summary(out, summary)
    return summary


def _matrix(rows: list[dict], names: list[str], side: str, key: str, n: int) -> np.ndarray:
    m = np.full((len(names), n), np.nan)
    for r in rows:
        if r["side"] == side and key in r:
            m[names.index(r["arch"]), r["seed"]] = r[key]
    return m


def summarise(rows: list[dict], cfg: dict) -> dict:
    names = list(cfg["architectures"])
    random = _matrix(rows, names, "random", "accuracy", cfg["seeds"])
    native = _matrix(rows, names, "random", "native_accuracy", cfg["seeds"])
    trained = _matrix(rows, names, "trained", "accuracy", cfg["trained_seeds"])
    half = _matrix(rows, names, "trained", "half_budget_accuracy", cfg["trained_seeds"])
    params = np.array([next(r["params"] for r in rows if r["arch"] == n) for n in names])
    table = []
    for i, name in enumerate(names):
        mine = [r for r in rows if r["arch"] == name]
        table.append({"arch": name, "spec": BASE | cfg["architectures"][name], "params": int(params[i]),
                      "native_dim": mine[0]["native_dim"], "random": mean_ci(random[i]),
                      "random_native": mean_ci(native[i]), "trained": mean_ci(trained[i]),
                      "trained_half_budget": mean_ci(half[i]),
                      "dead": mean_ci([r["dead"] for r in mine if r["side"] == "random"]),
                      "train_loss": mean_ci([r["train_loss"] for r in mine if r["side"] == "trained"]),
                      "train_seconds": mean_ci([r["train_seconds"] for r in mine if r["side"] == "trained"])})
    ranking = bootstrap_rho(random, trained, params)
    native_ranking = bootstrap_rho(native, trained, params, seed=1)
    mr, mt = np.nanmean(random, 1), np.nanmean(trained, 1)
    best_random = int(np.argmax(mr))
    config = {k: v for k, v in cfg.items() if k != "architectures"} | {
        "training": TRAINING, "alphas": ALPHAS, "base": BASE, "dataset": "shapes (32 px, seed 0)"}
    return {"config": config, "criteria": CRITERIA, "table": table, "ranking": ranking,
            "verdicts": verdicts(ranking), "native_ranking": native_ranking,
            "rho_random_params": float(spearman(mr, params.astype(float))),
            "rho_half_vs_full_budget": float(spearman(np.nanmean(half, 1), mt)),
            "pick": {"by_random": names[best_random], "its_trained": float(mt[best_random]),
                     "best_trained": names[int(np.argmax(mt))], "best_trained_accuracy": float(mt.max()),
                     "trained_rank_of_pick": int((mt > mt[best_random]).sum() + 1)}}


# ----------------------------------------------------------------------------- figure

def plot(summary: dict, path: Path) -> Path:
    """Trained against random-probe accuracy, one point per architecture, 95 % t
    intervals over seeds as error bars (the trained ones cut at 0 and 1)."""
    table, r = summary["table"], summary["ranking"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), layout="constrained")
    for k, e in enumerate(table):
        rx, ty = e["random"], e["trained"]
        lo, hi = max(ty["ci"][0], 0.0), min(ty["ci"][1], 1.0)  # an accuracy stays in [0, 1]
        ax.errorbar(rx["mean"], ty["mean"], xerr=[[rx["mean"] - rx["ci"][0]], [rx["ci"][1] - rx["mean"]]],
                    yerr=[[ty["mean"] - lo], [hi - ty["mean"]]], fmt="o", ms=5,
                    capsize=2, color=f"C{k % 10}", mec="k" if k >= 10 else None)
        ax.annotate(e["arch"], (rx["mean"], ty["mean"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.axhline(0.1, color="grey", ls=":", lw=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left")
    cfg = summary["config"]
    ax.set(xlabel=f"random-weight features: ridge-probe test accuracy ({cfg['probe_dim']} projected "
                  f"features, {cfg['seeds']} inits)",
           ylabel=f"trained test accuracy ({cfg['epochs']} epochs on {cfg['train']} images, "
                  f"{cfg['trained_seeds']} nets)")
    ax.xaxis.label.set_fontsize(8)
    ax.yaxis.label.set_fontsize(8)
    ax.set_title(f"shapes: Spearman ρ = {r['rho']:+.2f}, 95 % CI seeds [{r['ci_seeds'][0]:+.2f}, "
                 f"{r['ci_seeds'][1]:+.2f}], designs [{r['ci_designs'][0]:+.2f}, {r['ci_designs'][1]:+.2f}]",
                 fontsize=9)
    return save_figure(fig, path, dpi=110)


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv)
    for claim, rule in CRITERIA.items():
        print(f"criterion {claim}: {rule}")
    summary = run(size, out, figures)
    print(f"{'architecture':<18} {'params':>8} {'dim':>4} {'random (D)':>20} {'random (native)':>20} "
          f"{'trained':>20} {'dead':>5}")
    for e in summary["table"]:
        def fmt(s):
            return f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"
        print(f"{e['arch']:<18} {e['params']:>8} {e['native_dim']:>4} {fmt(e['random']):>20} "
              f"{fmt(e['random_native']):>20} {fmt(e['trained']):>20} {e['dead']['mean']:>5.2f}")
    r, nr = summary["ranking"], summary["native_ranking"]
    print(f"rho(random, trained) = {r['rho']:+.3f}; 95 % CI seeds [{r['ci_seeds'][0]:+.3f}, "
          f"{r['ci_seeds'][1]:+.3f}], architectures and seeds [{r['ci_designs'][0]:+.3f}, "
          f"{r['ci_designs'][1]:+.3f}]")
    print(f"native features: rho {nr['rho']:+.3f} [{nr['ci_seeds'][0]:+.3f}, {nr['ci_seeds'][1]:+.3f}]")
    print(f"rho(params, trained) = {r['rho_params']:+.3f}; rho - that = {r['diff_params']:+.3f} "
          f"[{r['ci_diff_params'][0]:+.3f}, {r['ci_diff_params'][1]:+.3f}]; rho(random, params) = "
          f"{summary['rho_random_params']:+.3f}; trained half vs full budget rho = "
          f"{summary['rho_half_vs_full_budget']:+.3f}")
    p = summary["pick"]
    print(f"random probe's pick {p['by_random']}: trained {p['its_trained']:.3f} (rank "
          f"{p['trained_rank_of_pick']}); best trained {p['best_trained']} {p['best_trained_accuracy']:.3f}")
    for claim, v in summary["verdicts"].items():
        print(f"verdict {claim}: {'PASS' if v['pass'] else 'FAIL'} ({v['rule']})")
    print(f"{summary['seconds']:.1f} s wall, {summary['cpu_seconds']:.1f} s CPU; results in {out}")
    return summary


if __name__ == "__main__":
    main()
