"""Q6: do t-SNE activation heatmaps show more than max-activating examples?

The claim under test: a unit's activation painted over a t-SNE map of all the
data shows far more than its k max-activating examples.  Operationally: a
per-unit statistic "shows something" about a network if it tells units of trained
networks from units of random ones.  On digits (8x8, the toolkit's fixed split),
for the units of the layer feeding the head of mlp, cnn and resnet18, random
(default init) and trained (the same init, a few epochs of SGD), over seeds, each
unit gets

* the ten reliability metrics of :func:`landscape.maxact.maxact` (rho, gain,
  displacement, n_maxima, p_hit, dist_to_data, topk_compactness, topk_jaccard,
  lipschitz, morans_i on the input-space kNN graph),
* the label purity of its top-k examples (share carrying their most common label),
* from its heatmap (:func:`landscape.tsne_heatmaps`, one t-SNE map of the input
  data shared by every network): Moran's I of the activation on the kNN graph of
  the 2-D map, and the spread of its top-k examples on the map (their mean
  pairwise map distance over that of all points);

and for every statistic the AUROC with which it separates trained from random
units (pooled over seeds; 95 % bootstrap interval over units; the spread of the
per-seed AUROCs; a permutation noise floor).  Dead units (constant over the data)
are counted and left out.

A prediction that could fail: if the heatmap shows more than the top examples,
Moran's I on the t-SNE map separates trained from random units better
(|AUROC − 0.5| larger, beyond the paired bootstrap interval) than every statistic
of the max-activating examples.

Writes results/q6_tsne_vs_maxact/ (units.csv, summary.json) and figures/q6_*.png.

    python experiments/q6_tsne_vs_maxact.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import numpy as np
from _common import parse_args, write_summary
from _units import (
    K_NEIGHBORS,
    auroc,
    dead,
    digits,
    fmt,
    live_units,
    maxact_options,
    purity,
    random_and_trained,
    save_figure,
    stat,
)
from _units import activations as unit_acts

import landscape
from landscape.maxact import METRICS, maxact, morans_i

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q6_tsne_vs_maxact"
MODELS = ("mlp", "cnn", "resnet18")
STATES = ("random", "trained")
TOPK_STATS = ("purity", "rho", "topk_compactness", "topk_jaccard", "gain", "displacement")
MAP_STATS = ("tsne_morans_i", "tsne_topk_spread")
# lipschitz has the activation's units: over the activation's std it is free of scale
OTHERS = (*METRICS, "lipschitz_over_std", "purity")
STATS = (*OTHERS, *MAP_STATS)

SIZES = {
    "quick": dict(seeds={"mlp": 2, "cnn": 2, "resnet18": 1}, samples=200,
                  epochs={"mlp": 2, "cnn": 2, "resnet18": 1}, units={"mlp": 5, "cnn": 5, "resnet18": 2},
                  top_k=3, restarts=2, steps=8, n_iter=100, perplexity=10.0, boot=200, perms=200,
                  shown=1),
    "default": dict(seeds=5, samples=None, epochs=None, units={"mlp": 16, "cnn": 16, "resnet18": 8},
                    top_k=9, restarts=6, steps=60, n_iter=500, perplexity=30.0, boot=1000, perms=1000,
                    shown=2),
    "full": dict(seeds=10, samples=None, epochs={"mlp": 20, "cnn": 15, "resnet18": 8},
                 units={"mlp": 64, "cnn": 64, "resnet18": 32}, top_k=9, restarts=16, steps=200,
                 n_iter=750, perplexity=30.0, boot=2000, perms=2000, shown=3),
}


def seeds_of(cfg: dict, name: str) -> int:
    return cfg["seeds"][name] if isinstance(cfg["seeds"], dict) else cfg["seeds"]


# ----------------------------------------------------------------------------- statistics

def map_morans_i(coords: np.ndarray, act: np.ndarray, k: int = K_NEIGHBORS) -> np.ndarray:
    """Moran's I of each column of ``act (N, U)`` on the symmetrised kNN graph of the
    map points ``coords (N, 2)`` (the definition of :func:`landscape.maxact.morans_i`)."""
    from sklearn.neighbors import NearestNeighbors

    neighbours = NearestNeighbors(n_neighbors=k).fit(coords).kneighbors()[1]
    return morans_i(act, neighbours)


def map_spread(coords: np.ndarray, topk_index: np.ndarray) -> np.ndarray:
    """Per row of ``topk_index (U, k)``: the mean pairwise map distance of those
    points over the mean pairwise distance of all map points."""
    from scipy.spatial.distance import pdist

    reference = pdist(coords).mean()
    return np.asarray([pdist(coords[row]).mean() / reference for row in topk_index])


def separation(trained: np.ndarray, random: np.ndarray, boot: int, perms: int,
               rng: np.random.Generator) -> dict:
    """AUROC of trained against random values, its bootstrap interval (units resampled
    within each group) and the permutation noise floor: the 95th percentile of
    |AUROC − 0.5| when the trained/random labels are shuffled."""
    t, r = trained[np.isfinite(trained)], random[np.isfinite(random)]
    a = auroc(t, r)
    boots = np.array([auroc(rng.choice(t, len(t)), rng.choice(r, len(r))) for _ in range(boot)])
    pooled = np.concatenate([t, r])
    null = []
    for _ in range(perms):
        p = rng.permutation(pooled)
        null.append(abs(auroc(p[:len(t)], p[len(t):]) - 0.5))
    return {"auroc": a, "ci": [float(np.nanpercentile(boots, 2.5)), float(np.nanpercentile(boots, 97.5))],
            "noise_floor": float(np.percentile(null, 95)), "n_trained": int(len(t)), "n_random": int(len(r))}


def purity_baselines(x: np.ndarray, labels: np.ndarray, k: int, draws: int = 2000) -> dict:
    """Top-k label purity of ``chance`` (random k-subsets of the data) and of a ``ball``
    (each datum with its k − 1 nearest neighbours): what k examples show when they are
    picked blindly, and when they merely lie close together in pixel space."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    chance = purity(labels, np.stack([rng.choice(len(x), k, replace=False) for _ in range(draws)]))
    neighbours = NearestNeighbors(n_neighbors=k - 1).fit(x).kneighbors()[1]
    ball = purity(labels, np.hstack([np.arange(len(x))[:, None], neighbours]))
    return {"chance": stat(chance), "ball": stat(ball), "k": k}


# ----------------------------------------------------------------------------- run

def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    wall, cpu = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    data = digits(cfg["samples"])
    x, y = data[0], data[1]
    labels = y.numpy()
    options = maxact_options(cfg, len(x))
    rows: list[dict] = []
    nets_info: list[dict] = []
    shown: dict = {}
    coords = None
    for name in MODELS:
        for seed in range(seeds_of(cfg, name)):
            nets, info = random_and_trained(name, seed, data, (cfg["epochs"] or {}).get(name))
            nets_info.append({"model": name, "seed": seed, **info})
            for state, net in nets.items():
                act_all = unit_acts(net, x)
                units = live_units(act_all, cfg["units"][name])
                nets_info[-1][f"{state}_dead"] = int(dead(act_all).sum())
                nets_info[-1][f"{state}_units_total"] = int(act_all.shape[1])
                ds = maxact(net, None, units, x, seed=seed, **options)
                # One map of the input data for every network (cached after the first fit).
                th = landscape.tsne_heatmaps(net, None, units, x, y, features="input", seed=0,
                                             n_iter=cfg["n_iter"], perplexity=cfg["perplexity"],
                                             maxact=ds, batch_size=max(2048, len(x)))
                coords = np.stack([th["tsne_x"].values, th["tsne_y"].values], axis=1)
                act = th["activation"].values
                topk = ds["topk_index"].values
                tmi = map_morans_i(coords, act)
                spread = map_spread(coords, topk)
                pur = purity(labels, topk)
                for i, u in enumerate(units):
                    row = {"model": name, "seed": seed, "state": state, "unit": u, "purity": pur[i],
                           "tsne_morans_i": tmi[i], "tsne_topk_spread": spread[i]}
                    row.update({m: float(ds[m].values[i]) for m in METRICS})
                    row["lipschitz_over_std"] = float(ds["lipschitz"].values[i] / ds["data_std"].values[i])
                    rows.append(row)
                if seed == 0:
                    k = min(cfg["shown"], len(units))
                    shown[(name, state)] = {"units": units[:k], "activation": act[:, :k],
                                            "topk_index": topk[:k], "images": ds["topk_image"].values[:k]}
            print(f"{name} seed {seed}: accuracy {info['test_accuracy']:.3f}, "
                  f"{time.process_time() - cpu:.0f} s CPU", flush=True)
    summary = summarise(rows, nets_info, cfg)
    summary["purity_baselines"] = purity_baselines(x.flatten(1).double().numpy(), labels, cfg["top_k"])
    summary["wall_s"], summary["cpu_s"] = time.time() - wall, time.process_time() - cpu
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "units.csv", "w") as fh:
        fh.write(",".join(keys) + "\n")
        for row in rows:
            fh.write(",".join(str(row[k]) for k in keys) + "\n")
    summary["figures"] = [str(plot_auroc(summary, figures / "q6_auroc.png")),
                          str(plot_heatmaps(shown, coords, labels, figures / "q6_heatmaps.png"))]
    write_summary(out, summary)
    return summary


def summarise(rows: list[dict], nets_info: list[dict], cfg: dict) -> dict:
    rng = np.random.default_rng(0)
    s: dict = {"config": cfg, "models": {}}
    for name in MODELS:
        info = [r for r in nets_info if r["model"] == name]
        mine = [r for r in rows if r["model"] == name]
        seeds = sorted({r["seed"] for r in mine})
        e: dict = {"test_accuracy": stat([r["test_accuracy"] for r in info]),
                   "dead": {st: stat([r[f"{st}_dead"] for r in info]) for st in STATES},
                   "units_total": info[0]["random_units_total"], "stats": {}}
        for key in STATS:
            t = np.array([r[key] for r in mine if r["state"] == "trained"], dtype=float)
            r_ = np.array([r[key] for r in mine if r["state"] == "random"], dtype=float)
            entry = separation(t, r_, cfg["boot"], cfg["perms"], rng)
            entry["per_seed"] = stat([
                auroc([r[key] for r in mine if r["state"] == "trained" and r["seed"] == sd],
                      [r[key] for r in mine if r["state"] == "random" and r["seed"] == sd])
                for sd in seeds])
            entry["mean"] = {st: stat([r[key] for r in mine if r["state"] == st]) for st in STATES}
            e["stats"][key] = entry
        # The prediction: Moran's I on the map against the best max-act statistic, with a
        # paired bootstrap of the difference in |AUROC − 0.5|.
        e["prediction"] = paired(mine, "tsne_morans_i", list(OTHERS), cfg["boot"], rng)
        s["models"][name] = e
    return s


def paired(rows: list[dict], candidate: str, others: list[str], boot: int, rng) -> dict:
    """|AUROC − 0.5| of ``candidate`` minus that of the best of ``others`` (the best on
    the data), with a bootstrap interval resampling the same units for both."""
    t = [r for r in rows if r["state"] == "trained"]
    r_ = [r for r in rows if r["state"] == "random"]

    def sep(group_t, group_r, key):
        return abs(auroc([g[key] for g in group_t], [g[key] for g in group_r]) - 0.5)

    best = max(others, key=lambda k: sep(t, r_, k))
    diffs = []
    for _ in range(boot):
        bt = [t[i] for i in rng.integers(0, len(t), len(t))]
        br = [r_[i] for i in rng.integers(0, len(r_), len(r_))]
        diffs.append(sep(bt, br, candidate) - sep(bt, br, best))
    return {"candidate": candidate, "best_other": best, "candidate_sep": sep(t, r_, candidate),
            "best_sep": sep(t, r_, best), "diff": sep(t, r_, candidate) - sep(t, r_, best),
            "diff_ci": [float(np.nanpercentile(diffs, 2.5)), float(np.nanpercentile(diffs, 97.5))]}


# ----------------------------------------------------------------------------- figures

def plot_auroc(summary: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, len(MODELS), figsize=(3.8 * len(MODELS), 4.2), sharey=True)
    ys = np.arange(len(STATS))
    for ax, name in zip(np.atleast_1d(axes), MODELS):
        st = summary["models"][name]["stats"]
        a = np.array([st[k]["auroc"] for k in STATS])
        lo = a - np.array([st[k]["ci"][0] for k in STATS])
        hi = np.array([st[k]["ci"][1] for k in STATS]) - a
        colours = ["C3" if k in MAP_STATS else "C0" for k in STATS]
        ax.barh(ys, a - 0.5, left=0.5, xerr=[lo, hi], color=colours, capsize=2)
        floor = np.mean([st[k]["noise_floor"] for k in STATS])
        ax.axvspan(0.5 - floor, 0.5 + floor, color="grey", alpha=0.25, lw=0)
        ax.axvline(0.5, color="k", lw=0.6)
        ax.set_xlim(0, 1)
        acc = summary["models"][name]["test_accuracy"]["mean"]
        ax.set_title(f"{name} (trained acc {acc:.2f})", fontsize=9)
        ax.set_xlabel("AUROC trained vs random")
    np.atleast_1d(axes)[0].set_yticks(ys, STATS, fontsize=7)
    fig.suptitle("per-unit statistics: blue max-act, red t-SNE map; grey band: permutation 95 %", fontsize=8)
    return save_figure(fig, path, dpi=100)


def _tile(images: np.ndarray) -> np.ndarray:
    """``(k, 1, H, W)`` images as one square-ish mosaic with one-pixel gaps."""
    k, _, h, w = images.shape
    side = int(np.ceil(np.sqrt(k)))
    out = np.full((side * (h + 1) - 1, side * (w + 1) - 1), np.nan)
    for i in range(k):
        r, c = divmod(i, side)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[i, 0]
    return out


def plot_heatmaps(shown: dict, coords: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    keys = [k for k in ((m, s) for m in MODELS for s in STATES) if k in shown]
    per_row = max(len(shown[k]["units"]) for k in keys)
    fig, axes = plt.subplots(len(keys), 2 * per_row, figsize=(2.2 * 2 * per_row, 2.1 * len(keys)),
                             squeeze=False)
    for row, key in enumerate(keys):
        item = shown[key]
        for j in range(per_row):
            ax_map, ax_top = axes[row][2 * j], axes[row][2 * j + 1]
            ax_map.set_xticks([])
            ax_map.set_yticks([])
            ax_top.axis("off")
            if j >= len(item["units"]):
                ax_map.axis("off")
                continue
            a = item["activation"][:, j]
            ax_map.scatter(coords[:, 0], coords[:, 1], c=a, s=1.5, cmap="viridis", rasterized=True)
            top = item["topk_index"][j]
            ax_map.scatter(coords[top, 0], coords[top, 1], marker="x", c="r", s=14, lw=0.8)
            ax_map.set_title(f"{key[0]} {key[1]} unit {item['units'][j]}", fontsize=7)
            ax_top.imshow(_tile(item["images"][j].astype(float)), cmap="gray_r")
            ax_top.set_title("top-k labels " + "".join(str(labels[i]) for i in top), fontsize=6)
    return save_figure(fig, path, dpi=80)


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv)
    summary = run(size, out, figures)
    for name, e in summary["models"].items():
        print(f"{name}: trained accuracy {fmt(e['test_accuracy'])}, dead random "
              f"{e['dead']['random']['mean']:.1f} / trained {e['dead']['trained']['mean']:.1f} "
              f"of {e['units_total']}")
        for key, st in e["stats"].items():
            print(f"  {key:18s} AUROC {st['auroc']:.3f} [{st['ci'][0]:.3f}, {st['ci'][1]:.3f}] "
                  f"per seed {fmt(st['per_seed'])} floor ±{st['noise_floor']:.3f}")
        p = e["prediction"]
        print(f"  prediction: |AUROC-0.5| {p['candidate']} {p['candidate_sep']:.3f} vs best other "
              f"{p['best_other']} {p['best_sep']:.3f}: diff {p['diff']:+.3f} "
              f"[{p['diff_ci'][0]:+.3f}, {p['diff_ci'][1]:+.3f}]")
    b = summary["purity_baselines"]
    print(f"top-{b['k']} purity of random subsets {fmt(b['chance'])}, of nearest-neighbour balls "
          f"{fmt(b['ball'])}")
    print(f"{summary['wall_s']:.0f} s wall, {summary['cpu_s']:.0f} s CPU")
    return summary


if __name__ == "__main__":
    main()
