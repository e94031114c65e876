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
* from its heatmaps on two maps (:func:`landscape.tsne_heatmaps`): the map of
  the input data (``space="input"``, one map shared by every network) and the
  map of the layer's own output (``space="features"``, flattened, PCA to 50, one
  map per network): Moran's I of the activation on the kNN graph of the 2-D map,
  the spread of its top-k examples on the map (their mean pairwise map distance
  over that of all points), and ``second_region``, the height of its second
  separate high-activation region (0 for one region);

and for every statistic the AUROC with which it separates trained from random
units (pooled over seeds; 95 % bootstrap interval over units; the spread of the
per-seed AUROCs; a permutation noise floor).  Dead units (constant over the data)
are counted and left out.

A prediction that could fail: if the heatmap shows more than the top examples,
Moran's I on the t-SNE map separates trained from random units better
(|AUROC − 0.5| larger, beyond the paired bootstrap interval) than every statistic
of the max-activating examples.

Second part, planted units (ground truth by construction): is there a heatmap
statistic that finds units responding to two well-separated clusters of the data,
whose top-k examples show only one?  On the same digits, each planted unit is a
detector of one digit class (an RBF around the class mean in pixel space, width
0.6-1.0 times the class's median radius, or a ReLU of the projection on the
class-mean direction, firing on the class's top tenth), plus a small linear
background.  A *two-cluster* unit is the max of detectors of two different classes,
the second scaled by r ~ U(0.5, 0.9), so its top-k come from the first class; a
*control* is one detector.  Heatmaps on the input map of the first part (map seeds
0 and 1); top-k and ascent statistics from :func:`landscape.maxact.maxact`.  The
statistic (``second_region``) and its options (level 0.2, regions of >= 10 points,
smoothing over 10 map neighbours) were fixed on development draws before this run;
the planted units here are a fresh draw (``PLANTED_SEED``).

Criterion, stated before the run: a heatmap statistic *finds* the two-cluster
units if ``second_region`` on the input map separates them from the controls at
AUROC >= 0.9 on both map seeds, while no statistic of the top-k examples (label
purity, topk_compactness, topk_jaccard, top-k spread on the map) reaches a
separation max(AUROC, 1 - AUROC) >= 0.9.  Reported beside it and not part of the
criterion: the same statistic on the inputs' own 10-NN graph (does the map add
anything over it?), and the ascent statistics n_maxima, p_hit and rho.

Writes results/q6_tsne_vs_maxact/ (units.csv, planted.csv, summary.json) and
figures/q6_*.png.

    python experiments/q6_tsne_vs_maxact.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import numpy as np
from _common import parse_args, write_summary
from _planted import PLANTED_SEED, planted_units
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
from landscape.embedding import response_regions
from landscape.maxact import METRICS, maxact, morans_i

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q6_tsne_vs_maxact"
MODELS = ("mlp", "cnn", "resnet18")
STATES = ("random", "trained")
TOPK_STATS = ("purity", "rho", "topk_compactness", "topk_jaccard", "gain", "displacement")
SPACES = {"tsne": "input", "feat": "features"}  # stat prefix -> tsne_heatmaps(space=...)
MAP_STATS = tuple(f"{p}_{s}" for p in SPACES for s in ("morans_i", "topk_spread", "second_region"))
# lipschitz has the activation's units: over the activation's std it is free of scale
OTHERS = (*METRICS, "lipschitz_over_std", "purity")
STATS = (*OTHERS, *MAP_STATS)

SIZES = {
    "quick": dict(seeds={"mlp": 2, "cnn": 2, "resnet18": 1}, samples=200,
                  epochs={"mlp": 2, "cnn": 2, "resnet18": 1}, units={"mlp": 5, "cnn": 5, "resnet18": 2},
                  top_k=3, restarts=2, steps=8, n_iter=100, perplexity=10.0, boot=200, perms=200,
                  shown=1, planted=12),
    "default": dict(seeds=5, samples=None, epochs=None, units={"mlp": 16, "cnn": 16, "resnet18": 8},
                    top_k=9, restarts=6, steps=60, n_iter=500, perplexity=30.0, boot=1000, perms=1000,
                    shown=2, planted=100),
    "full": dict(seeds=10, samples=None, epochs={"mlp": 20, "cnn": 15, "resnet18": 8},
                 units={"mlp": 64, "cnn": 64, "resnet18": 32}, top_k=9, restarts=16, steps=200,
                 n_iter=750, perplexity=30.0, boot=2000, perms=2000, shown=3, planted=200),
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
                topk = ds["topk_index"].values
                pur = purity(labels, topk)
                on_map = {}
                for prefix, space in SPACES.items():
                    # The input map is one for every network (cached after the first fit);
                    # the feature map is the network's own.
                    th = landscape.tsne_heatmaps(net, None, units, x, y, space=space, seed=0,
                                                 n_iter=cfg["n_iter"], perplexity=cfg["perplexity"],
                                                 maxact=ds, batch_size=max(2048, len(x)))
                    xy = np.stack([th["tsne_x"].values, th["tsne_y"].values], axis=1)
                    act = th["activation"].values
                    on_map[f"{prefix}_morans_i"] = map_morans_i(xy, act)
                    on_map[f"{prefix}_topk_spread"] = map_spread(xy, topk)
                    on_map[f"{prefix}_second_region"] = th["second_region"].values
                    on_map[f"{prefix}_n_regions"] = th["n_regions"].values
                    if space == "input":
                        coords = xy
                    feat_dims = th.attrs["pca_dims_used"]
                for i, u in enumerate(units):
                    row = {"model": name, "seed": seed, "state": state, "unit": u, "purity": pur[i],
                           "feat_pca_dims": feat_dims}
                    row.update({k: float(v[i]) for k, v in on_map.items()})
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
    planted_rows, summary["planted"], planted_shown = planted_study(data, cfg, options)
    write_csv(out / "planted.csv", planted_rows)
    summary["wall_s"], summary["cpu_s"] = time.time() - wall, time.process_time() - cpu
    write_csv(out / "units.csv", rows)
    summary["figures"] = [str(plot_auroc(summary, figures / "q6_auroc.png")),
                          str(plot_heatmaps(shown, coords, labels, figures / "q6_heatmaps.png")),
                          str(plot_planted(summary["planted"], planted_shown, labels,
                                           figures / "q6_planted.png"))]
    write_summary(out, summary)
    return summary


def write_csv(path: Path, rows: list[dict]) -> Path:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w") as fh:
        fh.write(",".join(keys) + "\n")
        for row in rows:
            fh.write(",".join(str(row[k]) for k in keys) + "\n")
    return path


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
        e["prediction_features"] = paired(mine, "feat_morans_i", list(OTHERS), cfg["boot"], rng)
        # Moran's I on each map against Moran's I on the inputs' own kNN graph, unit by unit.
        e["morans_i_agreement"] = {p: spearman([r[f"{p}_morans_i"] for r in mine],
                                               [r["morans_i"] for r in mine]) for p in SPACES}
        e["two_regions"] = {f"{p}_{st}": float(np.mean([r[f"{p}_n_regions"] >= 2 for r in mine
                                                        if r["state"] == st]))
                            for p in SPACES for st in STATES}
        e["feat_pca_dims"] = int(mine[0]["feat_pca_dims"])
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


# ----------------------------------------------------------------------------- planted units

MAP_SEEDS = (0, 1)
TOPK_PLANTED = ("purity", "topk_compactness", "topk_jaccard", "tsne_topk_spread")
ASCENT_PLANTED = ("n_maxima", "p_hit", "rho")
HEATMAP_PLANTED = ("second_region", "n_regions", "graph_second_region")
CRITERION = 0.9


def planted_study(data, cfg: dict, options: dict) -> tuple[list[dict], dict, dict]:
    """The planted-unit study (module docstring): per-unit rows, the summary with the
    criterion's verdict, and what the figure shows."""
    x, y = data[0], data[1]
    labels = y.numpy()
    flat = x.flatten(1).double().numpy()
    module, info = planted_units(flat, labels, cfg["planted"])
    units = list(range(len(info)))
    ds = maxact(module, "units", units, x, seed=PLANTED_SEED, **options)
    topk = ds["topk_index"].values
    rows = [dict(unit=u, **info[u], purity=p) for u, p in zip(units, purity(labels, topk))]
    for u, row in enumerate(rows):
        row.update({m: float(ds[m].values[u]) for m in METRICS})
        row["topk_one_class"] = bool((labels[topk[u]] == row["class_a"]).all())
    shown = {}
    for ms in MAP_SEEDS:
        th = landscape.tsne_heatmaps(module, "units", units, x, y, seed=ms, n_iter=cfg["n_iter"],
                                     perplexity=cfg["perplexity"], batch_size=max(2048, len(x)))
        xy = np.stack([th["tsne_x"].values, th["tsne_y"].values], axis=1)
        act = th["activation"].values
        graph = response_regions(flat, act, level=th.attrs["region_level"],
                                 min_size=th.attrs["region_min_size"], k=th.attrs["region_neighbors"])
        spread = map_spread(xy, topk)
        for u, row in enumerate(rows):
            row[f"second_region_s{ms}"] = float(th["second_region"].values[u])
            row[f"n_regions_s{ms}"] = int(th["n_regions"].values[u])
            row[f"tsne_topk_spread_s{ms}"] = float(spread[u])
            row["graph_second_region"] = float(graph[1][u])
            row["graph_n_regions"] = int(graph[0][u])
        if ms == MAP_SEEDS[0]:
            two = [u for u in units if info[u]["group"] == "two"][:2]
            one = [u for u in units if info[u]["group"] == "one"][:1]
            shown = {"coords": xy, "units": two + one, "activation": act[:, two + one],
                     "topk_index": topk[two + one], "info": [info[u] for u in two + one],
                     "second_region": th["second_region"].values[two + one]}
            options_used = {k: th.attrs[k] for k in ("region_level", "region_min_size",
                                                       "region_neighbors", "pca_dims_used")}
    return rows, summarise_planted(rows, cfg, options_used), shown


def summarise_planted(rows: list[dict], cfg: dict, options_used: dict) -> dict:
    rng = np.random.default_rng(0)
    two = [r for r in rows if r["group"] == "two"]
    one = [r for r in rows if r["group"] == "one"]

    def sep(key):
        e = separation(np.array([r[key] for r in two], float), np.array([r[key] for r in one], float),
                       cfg["boot"], cfg["perms"], rng)
        e["separation"] = max(e["auroc"], 1 - e["auroc"])
        return e

    s0 = MAP_SEEDS[0]
    stats = {f"{k}_s{ms}": sep(f"{k}_s{ms}") for ms in MAP_SEEDS
             for k in ("second_region", "n_regions", "tsne_topk_spread")}
    stats.update({k: sep(k) for k in ("graph_second_region", "purity", "topk_compactness",
                                      "topk_jaccard", *ASCENT_PLANTED)})
    topk_keys = ["purity", "topk_compactness", "topk_jaccard", f"tsne_topk_spread_s{s0}"]
    heat = [stats[f"second_region_s{ms}"]["auroc"] for ms in MAP_SEEDS]
    best_topk = max(topk_keys, key=lambda k: stats[k]["separation"])
    verdict = min(heat) >= CRITERION and stats[best_topk]["separation"] < CRITERION

    def rate(group, key, lo=0.0, hi=1.0):
        sel = [r for r in group if lo <= r["r"] < hi or group is one]
        return {"share": float(np.mean([r[key] >= 2 for r in sel])) if sel else float("nan"),
                "n": len(sel)}

    return {"n_two": len(two), "n_one": len(one), "seed": PLANTED_SEED, "map_seeds": list(MAP_SEEDS),
            "options": options_used, "criterion": CRITERION, "stats": stats,
            "topk_one_class": float(np.mean([r["topk_one_class"] for r in two])),
            "best_topk_statistic": best_topk, "found": bool(verdict),
            "two_regions": {"two r<0.7": rate(two, f"n_regions_s{s0}", 0.5, 0.7),
                            "two r>=0.7": rate(two, f"n_regions_s{s0}", 0.7, 1.0),
                            "one": rate(one, f"n_regions_s{s0}"),
                            "graph two": rate(two, "graph_n_regions"),
                            "graph one": rate(one, "graph_n_regions")},
            "by_kind": {k: sep_subset(rows, k, f"second_region_s{s0}") for k in ("rbf", "relu")}}


def sep_subset(rows: list[dict], kind: str, key: str) -> float:
    mine = [r for r in rows if r["kind"] == kind]
    return auroc([r[key] for r in mine if r["group"] == "two"],
                 [r[key] for r in mine if r["group"] == "one"])


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok])[0]) if ok.sum() > 2 else float("nan")


# ----------------------------------------------------------------------------- figures

def plot_auroc(summary: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, len(MODELS), figsize=(3.8 * len(MODELS), 5.2), sharey=True)
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
    fig.suptitle("per-unit statistics: blue max-act, red t-SNE maps (tsne_: input map, "
                 "feat_: layer map); grey band: permutation 95 %", fontsize=8)
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


def _heatmap(fig, ax, coords: np.ndarray, values: np.ndarray, top: np.ndarray, title: str) -> None:
    """One unit's heatmap on the map, strongest points drawn last, its top-k as red
    crosses, with a colourbar of the activation."""
    order = np.argsort(values)
    sc = ax.scatter(coords[order, 0], coords[order, 1], c=values[order], s=2, cmap="viridis",
                    linewidths=0, rasterized=True)
    ax.scatter(coords[top, 0], coords[top, 1], marker="x", c="r", s=18, lw=0.9)
    fig.colorbar(sc, ax=ax, shrink=0.85, pad=0.02).ax.tick_params(labelsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def plot_heatmaps(shown: dict, coords: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    keys = [k for k in ((m, s) for m in MODELS for s in STATES) if k in shown]
    per_row = max(len(shown[k]["units"]) for k in keys)
    fig, axes = plt.subplots(len(keys), 2 * per_row, figsize=(3.3 * 2 * per_row, 2.9 * len(keys)),
                             squeeze=False, gridspec_kw={"width_ratios": [1.35, 1] * per_row})
    for row, key in enumerate(keys):
        item = shown[key]
        for j in range(per_row):
            ax_map, ax_top = axes[row][2 * j], axes[row][2 * j + 1]
            ax_top.axis("off")
            if j >= len(item["units"]):
                ax_map.axis("off")
                continue
            top = item["topk_index"][j]
            _heatmap(fig, ax_map, coords, item["activation"][:, j], top,
                     f"{key[0]} {key[1]} unit {item['units'][j]}")
            ax_top.imshow(_tile(item["images"][j].astype(float)), cmap="gray_r")
            ax_top.set_title("top-k labels " + "".join(str(labels[i]) for i in top), fontsize=9)
    fig.suptitle("activation over the t-SNE map of the inputs (red x: top-k examples)", fontsize=10)
    return save_figure(fig, path, dpi=80)


def plot_planted(planted: dict, shown: dict, labels: np.ndarray, path: Path) -> Path:
    """Planted units' heatmaps (two-cluster units and a control, input map seed 0) and
    the AUROC of every statistic for two-cluster units against the controls."""
    fig = plt.figure(figsize=(15, 4.6))
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.25])
    for j, inf in enumerate(shown["info"]):
        what = (f"{inf['class_a']}+{inf['class_b']}, r {inf['r']:.2f}"
                if inf["group"] == "two" else f"control {inf['class_a']}")
        top = shown["topk_index"][j]
        _heatmap(fig, fig.add_subplot(grid[0, j]), shown["coords"], shown["activation"][:, j], top,
                 f"{inf['kind']} {what}\ntop-k {''.join(str(labels[i]) for i in top)}; "
                 f"2nd region {shown['second_region'][j]:.2f}")
    ax = fig.add_subplot(grid[0, 3])
    stats = planted["stats"]
    keys = list(stats)
    a = np.array([stats[k]["auroc"] for k in keys])
    lo = a - np.array([stats[k]["ci"][0] for k in keys])
    hi = np.array([stats[k]["ci"][1] for k in keys]) - a
    colours = ["C3" if k.startswith(("second_region", "n_regions")) else
               "C1" if k.startswith("graph") else "C0" for k in keys]
    ys = np.arange(len(keys))
    ax.barh(ys, a - 0.5, left=0.5, xerr=[lo, hi], color=colours, capsize=2)
    for edge in (1 - planted["criterion"], planted["criterion"]):
        ax.axvline(edge, color="k", lw=0.6, ls="--")
    ax.axvline(0.5, color="k", lw=0.6)
    ax.set_yticks(ys, keys, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUROC two-cluster vs control units", fontsize=9)
    ax.set_title("red: map regions, orange: input kNN graph,\nblue: top-k and ascent", fontsize=9)
    return save_figure(fig, path, dpi=90)


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
        for p, rho in e["morans_i_agreement"].items():
            print(f"  Spearman(Moran's I on the {SPACES[p]} map, on the input kNN graph) {rho:.3f}")
    pl = summary["planted"]
    print(f"planted: {pl['n_two']} two-cluster units vs {pl['n_one']} controls; top-k from one "
          f"class in {pl['topk_one_class']:.2f} of two-cluster units")
    for key, st in pl["stats"].items():
        print(f"  {key:22s} AUROC {st['auroc']:.3f} [{st['ci'][0]:.3f}, {st['ci'][1]:.3f}]")
    print("  share with >= 2 regions: " + ", ".join(f"{k} {v['share']:.2f} (n {v['n']})"
                                                      for k, v in pl["two_regions"].items()))
    print(f"  criterion (second_region AUROC >= {pl['criterion']} on every map seed, no top-k "
          f"statistic >= {pl['criterion']}; best top-k: {pl['best_topk_statistic']}): "
          f"{'MET' if pl['found'] else 'NOT MET'}")
    b = summary["purity_baselines"]
    print(f"top-{b['k']} purity of random subsets {fmt(b['chance'])}, of nearest-neighbour balls "
          f"{fmt(b['ball'])}")
    print(f"{summary['wall_s']:.0f} s wall, {summary['cpu_s']:.0f} s CPU")
    return summary


if __name__ == "__main__":
    main()
