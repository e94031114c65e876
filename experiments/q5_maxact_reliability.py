"""Q5: are max-activating examples a reliable portrait of a unit?

The claim under test: max-activating examples are unreliable: with many extrema
they miss the maximum; with few, dense data near the maximum activate strongly by
continuity alone, which is no evidence of a learned feature.  On digits (8x8, the
toolkit's fixed split), for the units of the layer feeding the head of mlp, cnn and
resnet18, random (default init) against trained (the same init, a few epochs of
SGD with :func:`landscape.train.train`), over seeds:

1. the ten reliability metrics of :func:`landscape.maxact.maxact` and their null
   z-scores (``null_models``: fresh draws from the model's own recipe), with the
   label purity of the top-k examples beside them; dead units (constant over the
   data) are counted and left out, in the networks and in their null draws;
2. the data-density argument: each unit's best-known maximum (its ``maxact``
   ascent on all the data) held fixed, the data thinned to N = 100, 300, 1000 (five
   random subsets each) and all: ``rho`` (the share of the climb from the median
   to the maximum that the top datum achieves), the distance from the maximum to
   the nearest datum (absolute and over the subset's median nearest-neighbour
   distance h_N) and from the top datum to the maximum;
3. random directions in activation space against single units (Szegedy et al.
   2013): unit j of a layer ``proj`` appended to the network is v_j · a(x), v_j
   uniform on the sphere of the layer's full activation space;
4. cascading re-randomisation (Adebayo et al. 2018): the trained network's layer
   groups replaced by a fresh draw from the top down; at each stage the same
   units' top-k overlap with the trained top-k, the rank correlation of their
   activations with the trained ones over the data, purity, Moran's I, and (mlp,
   cnn) the ascent metrics.

Every maximum depends on where it is sought, so parts 1-3 run under each search
region of :func:`landscape.maxact.maxact` (``box``: the per-pixel data box; ``ball``:
within the largest datum-to-mean distance of the mean; ``data``: blends of a start's
16 nearest digits, the library's default), with the same networks, units, starts and
seeds; the cascade's ascent metrics use the default region.

Predictions that could fail: (a) if dense data near the maximum is what makes the
top datum strong, thinning the data moves the top datum away from the maximum and
lowers rho by more than the seed-to-seed spread, and units whose maximum lies
closer to the data have higher rho (negative rank correlation rho ~ dist_to_data);
(b) if many extrema make the top datum miss the maximum, rho falls with n_maxima.
Pass/fail rules, fixed before the run (:data:`CRITERIA`; per region, over the six
model x state cells; "supported" when at least 5 cells pass, "not supported" when
at most 1 does, "mixed" otherwise):

- thinning lowers rho: rho(all data) − rho(N = 100) > 2 × the larger seed std;
- the maximum lies among the data: dist_to_data ≤ 1 h (under ``data`` close to
  true by construction, reported for completeness);
- rho falls with the distance of the maximum to the data: Spearman ≤ −0.2;
- rho falls with n_maxima: Spearman ≤ −0.2;
- random directions score like units: |AUROC(directions vs units) − 0.5| ≤ 0.15
  for rho.

Writes results/q5_maxact_reliability/ (units.csv, density.csv, cascade.csv with a
``region`` column, summary.json with ``regions`` and ``verdicts``; ``models`` is the
default region's) and figures/q5_*.png (q5_regions.png: the regions side by side).

    python experiments/q5_maxact_reliability.py [--quick | --full] [--out DIR]
        [--part mlp,cnn | --part resnet18:0 ... then --merge]
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from _common import parse_args, write_summary
from _q5_figures import (
    MODELS,
    STATES,
    plot_cascade,
    plot_density,
    plot_directions,
    plot_metrics,
    plot_regions,
    present,
)
from _units import (
    K_NEIGHBORS,
    activations,
    auroc,
    build,
    dead,
    digits,
    fmt,
    live_units,
    maxact_options,
    norms_of,
    purity,
    random_and_trained,
    stat,
)
from scipy.stats import spearmanr
from torch import nn

import landscape
from landscape.maxact import METRICS, REGIONS, maxact, morans_i
from landscape.maxact.search import DEFAULT_REGION

NAME = "q5_maxact_reliability"
# Parameter groups from the top down (names are prefixes of state-dict keys).
CASCADE = {
    "mlp": [["head"], ["fc2"], ["fc1"]],
    "cnn": [["head"], ["conv3"], ["conv2"], ["conv1"]],
    "resnet18": [["fc"], ["layer4"], ["layer3"], ["layer2"], ["layer1"], ["conv1", "bn1"]],
}

SIZES = {
    "quick": dict(seeds={"mlp": 2, "cnn": 2, "resnet18": 1}, samples=200,
                  epochs={"mlp": 2, "cnn": 2, "resnet18": 1},
                  units={"mlp": 4, "cnn": 4, "resnet18": 2}, nulls={"mlp": 1, "cnn": 1, "resnet18": 1},
                  top_k=3, restarts=2, steps=8, ns=(40, 100), draws=2, cascade_ascent=("mlp",)),
    "default": dict(seeds=5, samples=None, epochs=None,
                    units={"mlp": 16, "cnn": 16, "resnet18": 6}, nulls={"mlp": 3, "cnn": 3, "resnet18": 1},
                    top_k=9, restarts=6, steps=60, ns=(100, 300, 1000), draws=5,
                    cascade_ascent=MODELS),
    "full": dict(seeds=10, samples=None, epochs={"mlp": 20, "cnn": 15, "resnet18": 8},
                 units={"mlp": 64, "cnn": 64, "resnet18": 32}, nulls={"mlp": 4, "cnn": 4, "resnet18": 4},
                 top_k=9, restarts=16, steps=200, ns=(100, 300, 1000), draws=10, cascade_ascent=MODELS),
}


# ----------------------------------------------------------------------------- pieces

class Directions(nn.Module):
    """``base`` with a layer ``proj`` appended to its default layer: unit j of
    ``proj`` is ``v[:, j] · a(x)``, ``a`` all the default layer's units."""

    def __init__(self, base: nn.Module, v: torch.Tensor):
        super().__init__()
        self.base = base
        self.proj = nn.Linear(v.shape[0], v.shape[1], bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(v.T)
        self.default_layer = "proj"
        self.in_shape = base.in_shape
        self.name = f"{base.name}+directions"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(landscape.unit_activations(self.base, None, x))


def random_directions(n_features: int, count: int, seed: int) -> torch.Tensor:
    """``(n_features, count)``: columns uniform on the unit sphere."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    v = torch.randn(n_features, count, generator=gen)
    return v / v.norm(dim=0, keepdim=True)


def thinned(act: np.ndarray, x: np.ndarray, maximum: np.ndarray, best: np.ndarray) -> dict:
    """The density statistics of units with activations ``act (N, U)`` on data ``x (N, D)``
    whose best-known maxima are ``maximum (U, D)`` with activation ``best (U,)``:
    ``rho`` = (max a − median a) / (best − median a), ``dist`` = distance from the
    maximum to the nearest datum, ``dist_h`` = that over the data's median
    nearest-neighbour distance h, ``top_dist`` = distance from the top datum to the
    maximum, ``hill`` = Spearman correlation over the data of a_i with −‖x_i − maximum‖;
    all NaN for a unit constant on these data (``constant``)."""
    from sklearn.neighbors import NearestNeighbors

    nn_dist, _ = NearestNeighbors(n_neighbors=1).fit(x).kneighbors()
    positive = nn_dist[:, 0][nn_dist[:, 0] > 0]
    h = float(np.median(positive))
    median = np.median(act, axis=0)
    top = act.argmax(axis=0)
    out = {k: np.full(act.shape[1], np.nan) for k in ("rho", "dist", "dist_h", "top_dist", "hill")}
    constant = dead(act)
    for u in np.nonzero(~constant)[0]:  # a unit constant on these data: no top datum, left out
        d = np.sqrt(((x - maximum[u]) ** 2).sum(axis=1))
        climb = best[u] - median[u]
        out["rho"][u] = (act[top[u], u] - median[u]) / climb if climb > 0 else np.nan
        out["dist"][u] = d.min()
        out["dist_h"][u] = d.min() / h
        out["top_dist"][u] = d[top[u]]
        out["hill"][u] = spearmanr(act[:, u], -d).statistic
    out["h"] = h
    out["constant"] = constant
    return out


def knn_graph(x: np.ndarray, k: int = K_NEIGHBORS) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k).fit(x).kneighbors()[1]


def rerandomised(trained: nn.Module, fresh: nn.Module, groups: list[list[str]]) -> nn.Module:
    """A copy of ``trained`` whose parameters and buffers under every prefix of
    ``groups`` are ``fresh``'s."""
    out = copy.deepcopy(trained)
    state = dict(out.state_dict())
    fresh_state = fresh.state_dict()
    prefixes = tuple(f"{p}." for group in groups for p in group)
    for key in state:
        if key.startswith(prefixes):
            state[key] = fresh_state[key].clone()
    out.load_state_dict(state)
    return out


def topk_sets(act: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-act, axis=0, kind="stable")[:k].T


# ----------------------------------------------------------------------------- run

def run(size: str, out: Path, figures: Path, part: str | None = None, merge: bool = False) -> dict:
    """The whole question, or with ``part`` (``mlp``, ``resnet18:3``, comma-separated)
    only those networks, their rows kept in ``out/parts/<part>.pkl``; ``merge``
    summarises every kept part instead of running (so the default run can be spread
    over processes; the numbers are those of one process)."""
    cfg = SIZES[size]
    only = None if part is None else {(p.split(":")[0], int(p.split(":")[1]) if ":" in p else None)
                                      for p in part.split(",")}
    wall, cpu = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    data = digits(cfg["samples"])
    x, y = data[0], data[1]
    xn = x.flatten(1).double().numpy()
    labels = y.numpy()
    neighbours = knn_graph(xn)
    options = maxact_options(cfg, len(x))
    units_rows: list[dict] = []
    density_rows: list[dict] = []
    cascade_rows: list[dict] = []
    nets_info: list[dict] = []
    checks = {"topk_mismatch_units": 0, "topk_units": 0, "rho_max_abs_diff": 0.0,
              "dist_max_rel_diff": 0.0}
    for name in MODELS if not merge else ():
        for seed in range(seeds_of(cfg, name)):
            if only is not None and (name, seed) not in only and (name, None) not in only:
                continue
            nets, info = random_and_trained(name, seed, data, (cfg["epochs"] or {}).get(name))
            nets_info.append({"model": name, "seed": seed, **info})
            chosen = {}
            for state, net in nets.items():
                act_all = activations(net, x)
                is_dead = dead(act_all)
                units = live_units(act_all, cfg["units"][name])
                chosen[state] = units
                act = act_all[:, units]
                # the share of the data on which a unit rises above its floor (sparse units)
                low = act.min(axis=0)
                active = (act > low + 1e-6 * np.maximum(1.0, np.abs(act).max(axis=0))).mean(axis=0)
                mine = topk_sets(act, cfg["top_k"])
                v = random_directions(act_all.shape[1], len(units), seed)
                dir_act = act_all @ v.double().numpy()
                dir_dead = dead(dir_act)
                nets_info[-1][f"{state}_dead"] = int(is_dead.sum())
                nets_info[-1][f"{state}_units_total"] = int(len(is_dead))
                for region in REGIONS:
                    ds = maxact(net, None, units, x, null_models=cfg["nulls"][name], seed=seed,
                                region=region, **options)
                    if region == REGIONS[0]:
                        # Null draws: how many of the same units are dead there (the library
                        # pools them into the null as they are; counted here).  The null seeds
                        # do not depend on the region.
                        null_dead = 0
                        for s in ds.attrs.get("null_seeds", []):
                            null_dead += int(dead(activations(build(name, int(s)), x, units)).sum())
                        nets_info[-1][f"{state}_null_dead"] = null_dead
                        nets_info[-1][f"{state}_null_units"] = len(units) * len(
                            ds.attrs.get("null_seeds", []))
                    pur = purity(labels, ds["topk_index"].values)
                    checks["topk_units"] += len(units)
                    checks["topk_mismatch_units"] += int(sum(
                        set(a) != set(b) for a, b in zip(mine, ds["topk_index"].values)))
                    for i, u in enumerate(units):
                        row = {"model": name, "seed": seed, "state": state, "region": region,
                               "kind": "unit", "unit": u, "purity": pur[i],
                               "active_frac": float(active[i])}
                        for m in METRICS:
                            row[m] = float(ds[m].values[i])
                            row[f"{m}_z"] = float(ds[f"{m}_z"].values[i])
                        units_rows.append(row)
                    # Density: the maximum fixed, the data thinned.
                    maximum = ds["maximum"].values.reshape(len(units), -1).astype(float)
                    best = ds["best_activation"].values
                    full = thinned(act, xn, maximum, best)
                    checks["rho_max_abs_diff"] = max(checks["rho_max_abs_diff"], float(np.nanmax(
                        np.abs(full["rho"] - ds["rho"].values))))
                    checks["dist_max_rel_diff"] = max(checks["dist_max_rel_diff"], float(np.nanmax(
                        np.abs(full["dist_h"] - ds["dist_to_data"].values)
                        / np.maximum(ds["dist_to_data"].values, 1e-12))))
                    for n in (*cfg["ns"], len(x)):
                        for draw in range(cfg["draws"] if n < len(x) else 1):
                            rng = np.random.default_rng(1000 * seed + draw)
                            idx = (np.sort(rng.choice(len(x), n, replace=False)) if n < len(x)
                                   else np.arange(n))
                            res = thinned(act[idx], xn[idx], maximum, best)
                            for i, u in enumerate(units):
                                density_rows.append({
                                    "model": name, "seed": seed, "state": state, "region": region,
                                    "unit": u, "n": n, "draw": draw, "h": res["h"],
                                    "n_maxima": float(ds["n_maxima"].values[i]),
                                    "constant": bool(res["constant"][i]),
                                    **{k: float(res[k][i]) for k in ("rho", "dist", "dist_h", "top_dist",
                                                                     "hill")}})
                    # Random directions in the layer's whole activation space.
                    dd = maxact(Directions(net, v), "proj", list(range(len(units))), x, seed=seed,
                                region=region, **options)
                    dpur = purity(labels, dd["topk_index"].values)
                    for i in range(len(units)):
                        row = {"model": name, "seed": seed, "state": state, "region": region,
                               "kind": "direction", "unit": i,
                               "purity": dpur[i] if not dir_dead[i] else np.nan}
                        for m in METRICS:
                            row[m] = float(dd[m].values[i]) if not dir_dead[i] else np.nan
                        units_rows.append(row)
            # Cascading re-randomisation of the trained network, top down.
            trained = nets["trained"]
            fresh = build(name, 5000 + seed)
            units = chosen["trained"]
            has_bn = bool(norms_of(trained))
            bn = "recompute" if has_bn else "auto"
            stages = [("trained", [])]
            for j, group in enumerate(CASCADE[name]):
                stages.append(("+".join(group), CASCADE[name][:j + 1]))
            base_act = None
            for stage_index, (label, groups) in enumerate(stages):
                net = rerandomised(trained, fresh, groups) if groups else trained
                act = activations(net, x, units, bn=bn)
                if base_act is None:
                    base_act = act
                    base_top = topk_sets(act, cfg["top_k"])
                top = topk_sets(act, cfg["top_k"])
                is_dead = dead(act)
                mi = morans_i(act, neighbours)
                pur = purity(labels, top)
                row_metrics = {}
                if name in cfg["cascade_ascent"]:
                    cd = maxact(net, None, units, x, seed=seed, bn=bn, region=DEFAULT_REGION,
                                **options)
                    row_metrics = {m: cd[m].values.astype(float) for m in METRICS}
                for i, u in enumerate(units):
                    r = spearmanr(base_act[:, i], act[:, i]).statistic if not is_dead[i] else np.nan
                    row = {"model": name, "seed": seed, "stage": stage_index, "stage_label": label,
                           "unit": u, "dead": bool(is_dead[i]),
                           "overlap": len(set(top[i]) & set(base_top[i])) / cfg["top_k"],
                           "spearman": float(r),
                           "purity": float(pur[i]) if not is_dead[i] else np.nan,
                           "morans_i_data": float(mi[i]) if not is_dead[i] else np.nan}
                    for m, values in row_metrics.items():
                        row[m] = float(values[i]) if not is_dead[i] else np.nan
                    cascade_rows.append(row)
                if stage_index == len(stages) - 1:
                    # The last stage holds every parameter of the fresh draw.
                    fresh_act = activations(fresh, x, units, bn=bn)
                    checks.setdefault("cascade_end_max_abs_diff", 0.0)
                    checks["cascade_end_max_abs_diff"] = max(
                        checks["cascade_end_max_abs_diff"], float(np.abs(fresh_act - act).max()))
            print(f"{name} seed {seed}: accuracy {info['test_accuracy']:.3f}, dead "
                  f"{nets_info[-1]['random_dead']}/{nets_info[-1]['trained_dead']} of "
                  f"{nets_info[-1]['random_units_total']}, {time.process_time() - cpu:.0f} s CPU",
                  flush=True)
    part_cpu = 0.0
    if part is not None:
        import pickle

        kept = dict(units_rows=units_rows, density_rows=density_rows, cascade_rows=cascade_rows,
                    nets_info=nets_info, checks=checks, cpu_s=time.process_time() - cpu)
        (out / "parts").mkdir(exist_ok=True)
        with open(out / "parts" / f"{part.replace(':', '_').replace(',', '+')}.pkl", "wb") as fh:
            pickle.dump(kept, fh)
        return kept
    if merge:
        import pickle

        for path in sorted((out / "parts").glob("*.pkl")):
            with open(path, "rb") as fh:
                kept = pickle.load(fh)
            for key, rows in (("units_rows", units_rows), ("density_rows", density_rows),
                              ("cascade_rows", cascade_rows), ("nets_info", nets_info)):
                rows.extend(kept[key])
            for key, value in kept["checks"].items():
                checks[key] = checks.get(key, 0) + value if key.startswith("topk") else max(
                    checks.get(key, 0.0), value)
            part_cpu += kept["cpu_s"]
        order = {name: i for i, name in enumerate(MODELS)}
        nets_info.sort(key=lambda r: (order[r["model"]], r["seed"]))
    regions = {region: summarise([r for r in units_rows if r["region"] == region],
                                 [r for r in density_rows if r["region"] == region],
                                 cascade_rows, nets_info, cfg, len(x))["models"]
               for region in REGIONS}
    summary = {"config": cfg, "n_samples": len(x), "default_region": DEFAULT_REGION,
               "region_k": options.get("region_k", 16), "models": regions[DEFAULT_REGION],
               "regions": regions}
    summary["verdicts"] = {region: verdicts(regions[region], cfg, len(x)) for region in REGIONS}
    summary["checks"] = checks
    summary["chance_overlap"] = cfg["top_k"] / len(x)
    summary["wall_s"], summary["cpu_s"] = time.time() - wall, time.process_time() - cpu + part_cpu
    for fname, rows in (("units.csv", units_rows), ("density.csv", density_rows),
                        ("cascade.csv", cascade_rows)):
        write_csv(out / fname, rows)
    summary["figures"] = [str(p) for p in (
        plot_metrics(summary, figures / "q5_metrics.png"),
        plot_density(summary, cfg, len(x), figures / "q5_density.png"),
        plot_cascade(summary, figures / "q5_cascade.png"),
        plot_directions(summary, figures / "q5_directions.png"),
        plot_regions(summary, cfg, len(x), figures / "q5_regions.png"))]
    write_summary(out, summary)
    return summary


def seeds_of(cfg: dict, name: str) -> int:
    return cfg["seeds"][name] if isinstance(cfg["seeds"], dict) else cfg["seeds"]


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w") as fh:
        fh.write(",".join(keys) + "\n")
        for row in rows:
            fh.write(",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + "\n")


# ----------------------------------------------------------------------------- summary

def _per_seed(rows: list[dict], key: str) -> dict:
    """Mean over seeds (± std) of each seed's mean over its units, and the pooled units."""
    seeds = sorted({r["seed"] for r in rows})
    means = [np.nanmean([r[key] for r in rows if r["seed"] == s]) if any(
        np.isfinite(r[key]) for r in rows if r["seed"] == s) else np.nan for s in seeds]
    return {**stat(means), "units": stat([r[key] for r in rows])}


def _spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def summarise(units_rows, density_rows, cascade_rows, nets_info, cfg, n_all) -> dict:
    s: dict = {"config": cfg, "n_samples": n_all, "models": {}}
    for name in MODELS:
        info = [r for r in nets_info if r["model"] == name]
        if not info:  # a merge of parts without this model
            continue
        e: dict = {"test_accuracy": stat([r["test_accuracy"] for r in info]),
                   "train_cpu_s": stat([r["train_cpu_s"] for r in info]), "states": {}}
        for state in STATES:
            rows = [r for r in units_rows if r["model"] == name and r["state"] == state
                    and r["kind"] == "unit"]
            drows = [r for r in units_rows if r["model"] == name and r["state"] == state
                     and r["kind"] == "direction"]
            st: dict = {
                "dead_units": stat([r[f"{state}_dead"] for r in info]),
                "units_total": info[0][f"{state}_units_total"],
                "null_dead": int(sum(r[f"{state}_null_dead"] for r in info)),
                "null_units": int(sum(r[f"{state}_null_units"] for r in info)),
                "metrics": {m: _per_seed(rows, m) for m in (*METRICS, "purity", "active_frac")},
                "z": {m: _per_seed(rows, f"{m}_z") for m in METRICS},
                "directions": {m: _per_seed(drows, m) for m in (*METRICS, "purity")},
                "directions_vs_units_auroc": {
                    m: auroc([r[m] for r in drows], [r[m] for r in rows]) for m in (*METRICS, "purity")},
                "spearman_rho_dist_to_data": _spearman([r["rho"] for r in rows],
                                                       [r["dist_to_data"] for r in rows]),
                "spearman_rho_n_maxima": _spearman([r["rho"] for r in rows],
                                                   [r["n_maxima"] for r in rows]),
                "spearman_rho_active_frac": _spearman([r["rho"] for r in rows],
                                                      [r["active_frac"] for r in rows]),
                "spearman_rho_purity": _spearman([r["rho"] for r in rows], [r["purity"] for r in rows]),
                "density": {},
            }
            for n in (*cfg["ns"], n_all):
                rows_n = [r for r in density_rows if r["model"] == name and r["state"] == state
                          and r["n"] == n]
                # one value per (seed, draw): the mean over units; then mean ± std over those
                keys = sorted({(r["seed"], r["draw"]) for r in rows_n})
                entry = {}
                for k in ("rho", "dist", "dist_h", "top_dist", "hill", "h"):
                    entry[k] = stat([np.nanmean([r[k] for r in rows_n if (r["seed"], r["draw"]) == key])
                                     for key in keys])
                entry["constant_units"] = int(sum(r["constant"] for r in rows_n))
                entry["unit_draws"] = len(rows_n)
                entry["spearman_rho_dist"] = _spearman([r["rho"] for r in rows_n],
                                                       [r["dist"] for r in rows_n])
                st["density"][str(n)] = entry
            e["states"][state] = st
        stages = sorted({r["stage"] for r in cascade_rows if r["model"] == name})
        e["cascade"] = []
        for stage in stages:
            rows = [r for r in cascade_rows if r["model"] == name and r["stage"] == stage]
            entry = {"stage": stage, "label": rows[0]["stage_label"],
                     "dead": int(sum(r["dead"] for r in rows)), "units": len(rows)}
            for k in ("overlap", "spearman", "purity", "morans_i_data", *METRICS):
                if k in rows[0]:
                    entry[k] = _per_seed(rows, k)
            e["cascade"].append(entry)
        s["models"][name] = e
    return s


# ----------------------------------------------------------------------------- verdicts

# Written before the run: a claim is "supported" when its test passes in at least 5 of
# the 6 model x state cells (all but one of the cells a merge of parts holds), "not
# supported" in at most 1, "mixed" otherwise.
CRITERIA = {
    "thinning_lowers_rho": "rho(all data) - rho(smallest N) > 2 x the larger seed std of the two",
    "maximum_among_data": "dist_to_data (mean over seeds, all data) <= 1 h",
    "rho_falls_with_dist": "Spearman(rho, dist_to_data) across units <= -0.2",
    "rho_falls_with_n_maxima": "Spearman(rho, n_maxima) across units <= -0.2",
    "directions_like_units": "|AUROC(directions vs units) - 0.5| <= 0.15 for rho",
}


def verdicts(models: dict, cfg: dict, n_all: int) -> dict:
    """Each claim of :data:`CRITERIA` in every model x state cell of one region's
    summary ``models``, the count of cells that pass and the verdict."""
    small = str(cfg["ns"][0])
    out = {}
    for claim, rule in CRITERIA.items():
        cells = {}
        for name in present(models):
            for state in STATES:
                st = models[name]["states"][state]
                if claim == "thinning_lowers_rho":
                    lo, hi = st["density"][small]["rho"], st["density"][str(n_all)]["rho"]
                    value = hi["mean"] - lo["mean"]
                    ok = value > 2 * max(lo["std"], hi["std"])
                elif claim == "maximum_among_data":
                    value = st["metrics"]["dist_to_data"]["mean"]
                    ok = value <= 1
                elif claim == "rho_falls_with_dist":
                    value = st["spearman_rho_dist_to_data"]
                    ok = value <= -0.2
                elif claim == "rho_falls_with_n_maxima":
                    value = st["spearman_rho_n_maxima"]
                    ok = value <= -0.2
                else:
                    value = st["directions_vs_units_auroc"]["rho"]
                    ok = abs(value - 0.5) <= 0.15
                cells[f"{name}/{state}"] = {"value": float(value), "pass": bool(ok)}
        passes = sum(c["pass"] for c in cells.values())
        # the rule scaled to the cells present (5 of 6 / 1 of 6)
        verdict = ("supported" if passes >= len(cells) - 1 else "not supported" if passes <= 1
                   else "mixed")
        out[claim] = {"rule": rule, "cells": cells, "passes": passes, "of": len(cells),
                      "verdict": verdict}
    return out


def main(argv=None) -> dict:
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--part", default=None, help="run only these networks (mlp, resnet18:3, ...)")
    extra.add_argument("--merge", action="store_true", help="summarise the parts kept under --out")
    ns, rest = extra.parse_known_args(argv)
    size, out, figures = parse_args(__doc__, NAME, rest)
    summary = run(size, out, figures, part=ns.part, merge=ns.merge)
    if ns.part is not None:
        print(f"part {ns.part}: {summary['cpu_s']:.0f} s CPU")
        return summary
    for name, e in summary["models"].items():
        print(f"{name}: trained accuracy {fmt(e['test_accuracy'])}")
        for state, st in e["states"].items():
            line = ", ".join(f"{m} {st['metrics'][m]['mean']:.3g} (z {st['z'][m]['mean']:+.2f})"
                             for m in METRICS)
            print(f"  {state}: dead {st['dead_units']['mean']:.1f}/{st['units_total']}; {line}; "
                  f"purity {st['metrics']['purity']['mean']:.2f}")
            print("    density rho: " + ", ".join(
                f"N={n} {fmt(d['rho'], 2)} ({d['constant_units']} constant)"
                for n, d in st["density"].items()))
        print("  cascade overlap: " + ", ".join(
            f"{c['label']} {c['overlap']['mean']:.2f}" for c in e["cascade"]))
    for region, claims in summary["verdicts"].items():
        print(f"{region}: " + "; ".join(f"{c} {v['verdict']} ({v['passes']}/{v['of']})"
                                        for c, v in claims.items()))
    print(f"checks: {summary['checks']}")
    print(f"{summary['wall_s']:.0f} s wall, {summary['cpu_s']:.0f} s CPU")
    return summary


if __name__ == "__main__":
    main()
