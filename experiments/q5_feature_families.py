"""Q5/Q6 on data whose pixels do not give the class away: the top-9 class purity and
compactness of single features, family by family, at one feature count.

On digits a unit's top examples are class-pure whatever the unit is, because pixel
neighbours already are (9-NN purity 0.97): purity there cannot tell an architecture's
prior from the data's.  ``shapes`` (:mod:`landscape.shapes`, pixel 9-NN purity
0.134, chance 0.10) and ``mnist5k`` (real MNIST) ask again.  For each dataset and
each family of F features (F the same for every family):

* ``pixels``: F pixel coordinates drawn at random among those not constant on the
  test split (all of them if fewer);
* ``projection``: random linear projections x·w, w ~ N(0, I/D);
* ``fourier``: random Fourier features cos(w·x + b) of Q8 (w ~ N(0, I/σ²), σ the
  median pairwise distance, b ~ U[0, 2π]);
* ``random-mlp`` (2 hidden layers of width F, layer ``act2``), ``random-cnn``
  (width 32, layer ``act3``: channel means, F of its channels at random) and
  ``random-resnet18`` (layer ``avgpool``, F of its 512 channels at random), at
  the default init, BatchNorm statistics recomputed on the test images
  (as :func:`landscape.maxact` does for an untrained network);
* ``trained-cnn``: independently trained cnns (each seed its own init and batch
  order; Adam 2e-3, cosine schedule, batch 128), the same channels as the random
  cnn of that seed.

A feature's top-9 are the 9 test images on which it is largest (ties at the 9th
place broken at random, seeded: a stable sort would hand a tie to the lowest
indices).  Its purity is the share of the 9 carrying their most common label
(``experiments/_units.py: purity``, as Q5 and Q6).  Its compactness is
``topk_compactness`` of :mod:`landscape.maxact.metrics`: the mean pairwise distance
of the 9 in the standardised pixel space over that of a random subset of up to
2 048 test images (1 = as spread as random images; the ascent of ``maxact`` is not
run).  Features constant on the test split (dead) are left out and counted; those
whose 9th and 10th values tie are counted (saturated pixels, ReLU units active on
fewer than 10 images), and so is the share of distinct images among all top-9 lists
of a seed (hubs: images, such as bright ones, at the top of many features).  A seed's
value is the mean over its live features; the 95 % interval is Student's t over
seeds (random families: ``seeds`` seeds; trained cnn: one value per network).
Chance purity: random 9-subsets of the test labels; beside it the purity of
pixel-space 9-balls (a test image and its 8 nearest).

Pass/fail rules, fixed before the run (:data:`CRITERIA`).

Writes results/q5_feature_families/ (units.csv, summary.json) and
figures/q5_families.png.

    python experiments/q5_feature_families.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import parse_args, timing, write_summary
from _units import evaluated, purity
from q8_architecture_prior import random_fourier
from scipy import stats

import landscape
from landscape.train import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q5_feature_families"
FAMILIES = ("pixels", "projection", "fourier", "random-mlp", "random-cnn", "random-resnet18",
            "trained-cnn")
RANDOM = FAMILIES[:-1]
LAYERS = {"random-mlp": "act2", "random-cnn": "act3", "random-resnet18": "avgpool",
          "trained-cnn": "act3"}
TRAIN = dict(optimizer="adam", lr=2e-3, schedule="cosine", batch_size=128)
CI_LEVEL = 0.95
BN_SAMPLES = 512  # test images whose statistics a random network's BatchNorm layers use

CRITERIA = {
    "prior": "an architectural prior shows on shapes iff random-cnn purity is above both "
             "random-Fourier and projection purity, with non-overlapping 95 % intervals "
             "(the lower end of random-cnn's interval above the upper ends of both)",
    "prior_elsewhere": "the same rule on mnist5k and digits, reported beside it (not the "
                       "criterion)",
    "above_chance": "random-cnn purity's 95 % interval lies above the chance purity of "
                    "random 9-subsets",
    "trained_above_random": "trained-cnn purity's 95 % interval lies above random-cnn's",
}

SIZES = {
    "quick": dict(datasets=("shapes",), features=8, seeds=2, trained=2, top_k=9,
                  test={"shapes": 160}, train={"shapes": 160}, epochs={"shapes": 1}, cnn_width=4),
    "default": dict(datasets=("shapes", "mnist5k", "digits"), features=64, seeds=5, trained=3,
                    top_k=9, test={"shapes": None, "mnist5k": None, "digits": None},
                    train={"shapes": None, "mnist5k": None, "digits": None},
                    epochs={"shapes": 12, "mnist5k": 8, "digits": 20}, cnn_width=32),
    "full": dict(datasets=("shapes", "mnist5k", "digits"), features=128, seeds=10, trained=5,
                 top_k=9, test={"shapes": None, "mnist5k": None, "digits": None},
                 train={"shapes": None, "mnist5k": None, "digits": None},
                 epochs={"shapes": 12, "mnist5k": 12, "digits": 30}, cnn_width=32),
}


# ----------------------------------------------------------------------------- per feature

def topk_order(act: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(U, k)``: per column of ``act (N, U)`` the indices of its ``k`` largest values,
    ties broken by a random key (so a tie at the k-th place is not decided by index)."""
    out = np.empty((act.shape[1], k), dtype=np.int64)
    for u in range(act.shape[1]):
        out[u] = np.lexsort((rng.random(len(act)), -act[:, u]))[:k]
    return out


def mean_pairwise(x: np.ndarray) -> float:
    from scipy.spatial.distance import pdist

    return float(pdist(x).mean())


def feature_stats(act: np.ndarray, labels: np.ndarray, flat: np.ndarray, k: int, reference: float,
                  rng: np.random.Generator) -> dict:
    """Per column of ``act (N, U)``: ``dead`` (constant on the data), ``tied`` (k-th and
    (k+1)-th values equal), ``active`` (share of the data above the column's minimum),
    ``purity`` and ``compactness`` of the top-k (NaN for dead columns)."""
    spread = act.max(axis=0) - act.min(axis=0)
    dead = spread <= 1e-6 * np.maximum(1.0, np.abs(act).max(axis=0))
    order = topk_order(act, k, rng)
    sorted_desc = -np.sort(-act, axis=0)
    tied = sorted_desc[k - 1] == sorted_desc[k]
    pur = purity(labels, order)
    comp = np.array([mean_pairwise(flat[row]) / reference for row in order])
    pur[dead], comp[dead] = np.nan, np.nan
    return {"dead": dead, "tied": tied & ~dead, "active": (act > act.min(axis=0)).mean(axis=0),
            "purity": pur, "compactness": comp, "topk_index": order}


def chance_and_ball(flat: np.ndarray, labels: np.ndarray, k: int, draws: int = 4000) -> dict:
    """Purity of random k-subsets (chance) and of pixel-space k-balls (a datum and its
    k − 1 nearest neighbours)."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    chance = purity(labels, np.stack([rng.choice(len(flat), k, replace=False) for _ in range(draws)]))
    neighbours = NearestNeighbors(n_neighbors=k - 1).fit(flat).kneighbors()[1]
    ball = purity(labels, np.hstack([np.arange(len(flat))[:, None], neighbours]))
    return {"chance": float(chance.mean()), "ball": float(ball.mean())}


# ----------------------------------------------------------------------------- families

def network(family: str, seed: int, in_shape, cfg: dict) -> torch.nn.Module:
    if family == "random-mlp":
        return landscape.build_model("mlp", seed=seed, in_shape=in_shape, width=cfg["features"])
    if family in ("random-cnn", "trained-cnn"):
        return landscape.build_model("cnn", seed=seed, in_shape=in_shape, width=cfg["cnn_width"])
    return landscape.build_model("resnet18", seed=seed, in_shape=in_shape)


@torch.no_grad()
def net_activations(model: torch.nn.Module, layer: str, x: torch.Tensor, batch: int = 500) -> np.ndarray:
    """All units of ``layer`` on ``x``: eval mode, an untrained network's BatchNorm
    statistics recomputed on the first :data:`BN_SAMPLES` images (``_units.evaluated``)."""
    view = evaluated(model, x[:BN_SAMPLES])
    return torch.cat([landscape.unit_activations(view, layer, x[i:i + batch])
                      for i in range(0, len(x), batch)]).double().numpy()


def choose(n_total: int, count: int, rng: np.random.Generator, allowed=None) -> np.ndarray:
    """``count`` sorted indices drawn without replacement from ``allowed`` (default all
    ``n_total``); all of them if there are no more than ``count``."""
    pool = np.arange(n_total) if allowed is None else np.asarray(allowed)
    return pool if len(pool) <= count else np.sort(rng.choice(pool, count, replace=False))


def family_activations(family: str, seed: int, x: torch.Tensor, flat: np.ndarray, cfg: dict,
                       model: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(act, units)``: the ``(N, F)`` features of ``family`` (seed ``seed``) on the test
    images ``x`` (``flat``: the same, flattened) and, for pixels and networks, which pixel
    coordinates or units of the layer they are (-1 for projections and Fourier
    features); ``model``: the trained cnn for ``trained-cnn``."""
    rng = np.random.default_rng((seed, FAMILIES.index(family) if family != "trained-cnn"
                                 else FAMILIES.index("random-cnn")))
    n_feat, dim = cfg["features"], flat.shape[1]
    if family == "pixels":
        varying = np.nonzero(flat.max(axis=0) > flat.min(axis=0))[0]
        units = choose(dim, n_feat, rng, varying)
        return flat[:, units], units
    none = np.full(n_feat, -1)
    if family == "projection":
        return flat @ (rng.standard_normal((dim, n_feat)) / np.sqrt(dim)), none
    if family == "fourier":
        return random_fourier(flat, flat[:1], n_feat, seed)[0], none
    net = model if model is not None else network(family, seed, tuple(x.shape[1:]), cfg)
    act = net_activations(net, LAYERS[family], x)
    units = choose(act.shape[1], n_feat, rng)
    return act[:, units], units


# ----------------------------------------------------------------------------- statistics

def interval(values, level: float = CI_LEVEL) -> dict:
    """Mean and Student's t interval of the finite ``values`` (one per seed)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "ci": [mean, mean], "n": n}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return {"mean": mean, "ci": [mean - half, mean + half], "n": n}


def above(a: dict, b: dict) -> bool:
    """Is interval ``a`` entirely above interval ``b``?"""
    return bool(a["ci"][0] > b["ci"][1])


def verdicts(per_data: dict) -> dict:
    """The rules of :data:`CRITERIA` applied to each dataset's family intervals."""
    out = {}
    for data, entry in per_data.items():
        fam = entry["families"]
        cnn = fam["random-cnn"]["purity"]
        prior = above(cnn, fam["fourier"]["purity"]) and above(cnn, fam["projection"]["purity"])
        out[data] = {
            "prior": prior,
            "above_chance": bool(cnn["ci"][0] > entry["chance"]),
            "trained_above_random": above(fam["trained-cnn"]["purity"], cnn),
        }
    if "shapes" in out:
        out["verdict"] = ("an architectural prior shows on shapes" if out["shapes"]["prior"]
                          else "no architectural prior shows on shapes")
    return out


def summarise_family(rows: list[dict]) -> dict:
    seeds = sorted({r["seed"] for r in rows})
    per_seed = {m: [np.nanmean([r[m] for r in rows if r["seed"] == s and not r["dead"]])
                    for s in seeds] for m in ("purity", "compactness", "active")}
    # hubs: the share of distinct images among a seed's top-k lists (1: no image repeats)
    distinct = []
    for s in seeds:
        lists = [r["topk"].split() for r in rows if r["seed"] == s and not r["dead"]]
        distinct.append(len({i for t in lists for i in t}) / max(1, sum(map(len, lists))))
    return {"purity": interval(per_seed["purity"]), "compactness": interval(per_seed["compactness"]),
            "active": interval(per_seed["active"]), "distinct_topk": interval(distinct),
            "per_seed_purity": per_seed["purity"],
            "features": len(rows), "dead": int(sum(r["dead"] for r in rows)),
            "tied": int(sum(r["tied"] for r in rows))}


# ----------------------------------------------------------------------------- run

def run_dataset(data: str, cfg: dict, rows: list[dict]) -> dict:
    xt, yt = landscape.load_dataset(data, split="test", n=cfg["test"][data])
    labels = yt.numpy()
    flat = xt.flatten(1).double().numpy()
    k = cfg["top_k"]
    sub = np.random.default_rng(0).permutation(len(flat))[:2048]
    reference = mean_pairwise(flat[sub])
    entry = {"test_images": len(flat), "pixels": flat.shape[1], "reference_distance": reference,
             **chance_and_ball(flat, labels, k), "networks": []}

    def record(family: str, seed: int, features: tuple[np.ndarray, np.ndarray]) -> None:
        act, units = features
        rng = np.random.default_rng((seed, 1000 + FAMILIES.index(family)))
        st = feature_stats(act, labels, flat, k, reference, rng)
        for u in range(act.shape[1]):
            rows.append({"data": data, "family": family, "seed": seed, "feature": u,
                         "unit": int(units[u]),
                         **{m: st[m][u].item() for m in ("dead", "tied", "active", "purity",
                                                         "compactness")},
                         "topk": " ".join(map(str, st["topk_index"][u]))})

    for seed in range(cfg["seeds"]):
        for family in RANDOM:
            record(family, seed, family_activations(family, seed, xt, flat, cfg))
    x, y = landscape.load_dataset(data, split="train", n=cfg["train"][data])
    for seed in range(cfg["trained"]):
        net = network("trained-cnn", seed, tuple(xt.shape[1:]), cfg)
        cpu = time.process_time()
        history, _ = train(net, x, y, xt, yt, epochs=cfg["epochs"][data], seed=seed, **TRAIN)
        entry["networks"].append({"seed": seed, "test_accuracy": float(history["test_accuracy"][-1]),
                                  "train_cpu_s": time.process_time() - cpu, "train_images": len(x)})
        print(f"{data}: trained cnn {seed}: test accuracy {history['test_accuracy'][-1]:.3f}", flush=True)
        record("trained-cnn", seed, family_activations("trained-cnn", seed, xt, flat, cfg, model=net))
    entry["families"] = {f: summarise_family([r for r in rows if r["data"] == data and r["family"] == f])
                         for f in FAMILIES}
    return entry


def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    start, cpu = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    summary = {"config": cfg | {"train_options": TRAIN, "layers": LAYERS, "bn_samples": BN_SAMPLES},
               "criteria": CRITERIA, "interval": "Student's t over seeds (95 %)", "data": {}}
    for data in cfg["datasets"]:
        summary["data"][data] = run_dataset(data, cfg, rows)
        print_table(data, summary["data"][data])
    summary["verdicts"] = verdicts(summary["data"])
    write_csv(out / "units.csv", rows)
    summary["figures"] = [str(plot(summary, figures / "q5_families.png"))]
    timing(summary, start, cpu)
    write_summary(out, summary)
    return summary


def write_csv(path: Path, rows: list[dict]) -> Path:
    keys = list(rows[0])
    with open(path, "w") as fh:
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(str(r[k]) for k in keys) + "\n")
    return path


# ----------------------------------------------------------------------------- output

def fmt(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"


def print_table(data: str, entry: dict) -> None:
    print(f"\n{data}: {entry['test_images']} test images, chance purity {entry['chance']:.3f}, "
          f"pixel 9-ball purity {entry['ball']:.3f}")
    for f, e in entry["families"].items():
        print(f"  {f:16s} purity {fmt(e['purity'])}  compactness {fmt(e['compactness'])}  "
              f"dead {e['dead']}/{e['features']}  tied {e['tied']}  distinct "
              f"{e['distinct_topk']['mean']:.2f}", flush=True)


def plot(summary: dict, path: Path) -> Path:
    datasets = list(summary["data"])
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.2 * len(datasets), 6.2), squeeze=False)
    for j, data in enumerate(datasets):
        entry = summary["data"][data]
        for i, metric in enumerate(("purity", "compactness")):
            ax = axes[i][j]
            means = [entry["families"][f][metric]["mean"] for f in FAMILIES]
            lo = [m - entry["families"][f][metric]["ci"][0] for m, f in zip(means, FAMILIES)]
            hi = [entry["families"][f][metric]["ci"][1] - m for m, f in zip(means, FAMILIES)]
            colours = ["grey", "C7", "C3", "C0", "C2", "C1", "k"]
            ax.bar(range(len(FAMILIES)), means, yerr=[lo, hi], color=colours, capsize=3)
            if metric == "purity":
                ax.axhline(entry["chance"], color="k", ls=":", lw=1, label="chance")
                ax.axhline(entry["ball"], color="C4", ls="--", lw=1, label="pixel 9-ball")
                ax.set_title(f"{data} ({entry['test_images']} test images)", fontsize=9)
                if j == 0:
                    ax.legend(fontsize=7)
            else:
                ax.axhline(1.0, color="k", ls=":", lw=1)
            ax.set_xticks(range(len(FAMILIES)), FAMILIES, rotation=40, ha="right", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"top-{summary['config']['top_k']} {metric}")
    fig.suptitle(f"single features, {summary['config']['features']} per family: mean and 95 % "
                 "t interval over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv)
    print("criteria (fixed before the run):")
    for key, text in CRITERIA.items():
        print(f"  {key}: {text}")
    summary = run(size, out, figures)
    print("\nverdicts:")
    for data, v in summary["verdicts"].items():
        print(f"  {data}: {v}")
    print(f"{summary['seconds']:.0f} s wall, {summary['cpu_seconds']:.0f} s CPU; results in {out}")
    return summary


if __name__ == "__main__":
    main()
