"""Q7 at real scale: SAEs on a pretrained transformer (MiniLM) against its random variants.

The claim under test (Heap et al. 2025, arXiv 2501.17727): sparse autoencoders
trained on the activations of randomly initialised transformers give latents that
look as interpretable, by automated-interpretability and SAE quality metrics, as
those of trained transformers.  Q7 (``q7_sae_random_vs_trained.py``) asked it of a
2-block byte transformer trained here; this script asks it of a real pretrained
one, ``--model minilm`` (all-MiniLM-L6-v2: 6 BERT layers, width 384, WordPiece
vocabulary of 30 522; :mod:`landscape.models.minilm`), on the ``english`` corpus
(Python's own documentation, ``pydoc_data.topics``), offline.

Conditions (:func:`landscape.make_variant`): ``trained`` (the shipped weights),
``init`` (BERT's initialisation N(0, 0.02²), LayerNorm 1/0), ``rerandomised``
(every tensor re-drawn from its own mean and std), ``control`` (trained, token
embedding replaced by Gaussian noise of its scale), ``rerandomised-except-embeddings``
(--full only: it did not fit the default's CPU budget), and the
initialisations the byte model lost the look under, ``init:xavier:0`` and
``init:kaiming:0``.  Residual stream after layers 1, 3 and 6 (``--layer N``:
``layers.{N-1}``).  Activations are cached once per (variant, layer) from one
forward pass per batch (:func:`cache_activations`); per cache, one TopK SAE per SAE
seed.  The trained network is one network: every spread below is the SAE seed's
(and one random draw per random variant), not that of independently trained or
drawn networks.

Metrics (:func:`landscape.sae_metrics` on held-out windows of the test split):
``fvu``, ``l0``, ``dead_frac``, ``token_entropy`` (bits, latents with ≥ 32
activations), ``interp_auroc`` and ``interp_auroc_context`` (token/bigram and
recent-context explanations from the training windows, scored on held-out
positions), ``embedding_recovered`` (the model has no training loss: the cosine of
the sentence embedding with the SAE's reconstruction spliced in against the clean
one, beside ``embedding_recovered_mean_ablated``), plus ``token_r2`` (share of the
layer's variance explained by the current WordPiece token, adjusted), and the
confound of special tokens: ``special_frac``, the share of live latents whose top
activations lie mostly at ``[CLS]`` or ``[SEP]``, and ``interp_auroc_text``, the
mean ``interp_auroc`` of the others.  Windows are full length: no padding.

Criteria (:data:`CRITERIA`) are written to ``criteria.txt`` before anything is
measured.  Writes results/q7_minilm/ (criteria.txt, rows.csv, summary.json) and
figures/q7_minilm_*.png.

    python experiments/q7_minilm.py [--quick | --full] [--out DIR] [--figures DIR]
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import equivalence_text, parse_args, save_figure, timing, tost, write_summary

import landscape
from landscape.models import eval_mode, resolve_layer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NAME = "q7_minilm"
RANDOM = ("init", "rerandomised", "rerandomised-except-embeddings")
INITS = ("init:xavier:0", "init:kaiming:0")
METRICS = ("fvu", "l0", "dead_frac", "token_entropy", "interp_auroc", "interp_auroc_context",
           "interp_auroc_text", "special_frac", "embedding_recovered",
           "embedding_recovered_mean_ablated", "loss_recovered_mean", "token_r2")
# Which way is "more interpretable" (Heap et al.'s reading): +1 higher, -1 lower.
INTERP_SIGN = {"interp_auroc": 1, "interp_auroc_context": 1, "token_entropy": -1}
# Equivalence margins, fixed before the run, in each metric's own units (Q7's where it has one).
MARGINS = {"fvu": 0.01, "l0": 0.5, "dead_frac": 0.05, "token_entropy": 0.25,
           "interp_auroc": 0.02, "interp_auroc_context": 0.02, "interp_auroc_text": 0.02,
           "special_frac": 0.05, "embedding_recovered": 0.02, "token_r2": 0.03}
TOP_N = 32
CRITERIA = """\
Q7 at real scale (MiniLM), criteria fixed before the run.
Tests: TOST (_common.tost, Welch over SAE seeds, alpha 0.05) of random minus trained
at the margins in MARGINS: interp_auroc 0.02, interp_auroc_context 0.02,
token_entropy 0.25 bits, fvu 0.01, dead_frac 0.05, l0 0.5, embedding_recovered 0.02.
A random variant "looks as interpretable" as trained on a metric when the test says
equivalent, or different in the random variant's favour (interp_auroc higher,
token_entropy lower); "less interpretable" when different against it; otherwise
"inconclusive".
M1 (Heap et al. on a pretrained transformer): at a layer the finding holds iff both
  init and rerandomised look as interpretable as trained on interp_auroc AND on
  token_entropy; it fails at a layer iff init or rerandomised is less interpretable on
  interp_auroc.  Overall: "holds" at every layer, "fails" at every layer, else "mixed".
M2 (the byte model's drop under Xavier/Kaiming): at a layer the drop appears iff both
  init:xavier:0 and init:kaiming:0 have interp_auroc different from and below BOTH
  init (BERT's N(0, 0.02)) and trained.  Overall: "appears" at every layer, "absent"
  at no layer, else "mixed".
M3 (mechanism, as on the byte model): across every (variant, layer, seed) SAE the
  Spearman correlation of interp_auroc with token_r2 is >= +0.5.
Confound check, reported beside M1: interp_auroc_text (special-token latents left out)
  gets the same verdicts as interp_auroc.
"""

SIZES = {
    "quick": dict(seeds=2, context=16, layers=("1", "6"),
                  variants=("trained", "init", "init:xavier:0"),
                  train_windows=32, eval_windows=16, expansion=1, k=8, sae_batch=64,
                  sae_epochs=2, batch=16),
    "default": dict(seeds=3, context=64, layers=("1", "3", "6"),
                    variants=("trained", "init", "rerandomised", "control", *INITS),
                    train_windows=384, eval_windows=40, expansion=4, k=16, sae_batch=256,
                    sae_epochs=3, batch=32),
    "full": dict(seeds=5, context=64, layers=("1", "2", "3", "4", "5", "6"),
                 variants=("trained", *RANDOM, "control", *INITS, "init:kaiming:1"),
                 train_windows=1950, eval_windows=112, expansion=16, k=32, sae_batch=1024,
                 sae_epochs=4, batch=64),
}


# ----------------------------------------------------------------------------- measures

def token_r2(vectors: torch.Tensor, tokens: torch.Tensor) -> float:
    """Adjusted share of the variance of ``vectors (N, d)`` explained by the token at each
    position (one-way analysis of variance over the ``K`` distinct tokens, any ids):
    ``1 − (1 − R²)(N − 1)/(N − K)`` with ``R² = Σ_t n_t ‖μ_t − μ‖² / Σ_i ‖v_i − μ‖²``.
    Expectation 0 when the vectors do not depend on the token, 1 when a function of it."""
    v = vectors.double()
    _, inverse = np.unique(np.asarray(tokens).reshape(-1), return_inverse=True)
    t = torch.as_tensor(inverse.reshape(-1))
    k = int(t.max()) + 1
    mu = v.mean(0)
    sums = torch.zeros(k, v.shape[1], dtype=torch.float64).index_add_(0, t, v)
    counts = torch.bincount(t, minlength=k).double()
    between = float((counts * (sums / counts[:, None] - mu).pow(2).sum(1)).sum())
    total = float((v - mu).pow(2).sum())
    n = len(t)
    if total <= 0 or n <= k:
        return float("nan")
    return 1 - (1 - between / total) * (n - 1) / (n - k)


def special_latents(top_position: np.ndarray, context: int) -> np.ndarray:
    """Per latent (rows of ``top_position (M, ranks)``, −1 padded): whether at least half
    of its top positions are the window's first or last (``[CLS]``, ``[SEP]``); False for
    a latent with none."""
    valid = top_position >= 0
    special = valid & ((top_position == 0) | (top_position == context - 1))
    n = valid.sum(1)
    return (n > 0) & (2 * special.sum(1) >= n)


def interval(values) -> dict:
    """Mean and the 95 % t-interval over the finite ``values``."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    half = (float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
            if len(v) > 1 else float("nan"))
    return {"mean": float(v.mean()), "lo": float(v.mean() - half), "hi": float(v.mean() + half),
            "n": int(len(v))}


def reading(test: dict, sign: int) -> str:
    """A :func:`tost` result of random minus trained, read for interpretability:
    ``as interpretable`` (equivalent, or different in the random side's favour by
    ``sign``), ``less interpretable`` (different against it) or ``inconclusive``."""
    if test["verdict"] == "equivalent":
        return "as interpretable"
    if test["verdict"] == "different":
        return "as interpretable" if sign * test["diff"] > 0 else "less interpretable"
    return "inconclusive"


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[keep], b[keep])[0]) if keep.sum() > 2 else float("nan")


# ----------------------------------------------------------------------------- activations

@torch.no_grad()
def cache_activations(model, x: torch.Tensor, layers, batch_size: int = 32) -> dict:
    """``{layer index: (N · T, width) float32}`` of ``model``'s residual stream after
    each of ``layers`` (``"N"``: after N layers, as ``--layer N``), from one forward pass
    per batch of ``x`` (:meth:`~landscape.models.minilm.MiniLM.hidden_states`)."""
    index = [int(layer) for layer in layers]
    out = {i: [] for i in index}
    with eval_mode(model):
        for b in range(0, len(x), batch_size):
            states = model.hidden_states(x[b:b + batch_size])
            for i in index:
                out[i].append(states[i].reshape(-1, states[i].shape[-1]).float())
    return {str(i): torch.cat(v) for i, v in out.items()}


def build_variant(trained, name: str):
    return trained if name == "trained" else landscape.make_variant(trained, name, seed=0)


def sae_row(model, layer: str, vectors, train_x, eval_x, cfg: dict, seed: int) -> dict:
    """One SAE on ``layer``'s cached training ``vectors``, measured on ``eval_x``."""
    t0 = time.process_time()
    sae = landscape.train_sae(vectors, expansion=cfg["expansion"], k=cfg["k"], seed=seed,
                              epochs=cfg["sae_epochs"], batch_size=cfg["sae_batch"])
    train_cpu = time.process_time() - t0
    ds = landscape.sae_metrics(model, sae, eval_x, None, layer, train_x=train_x,
                               train_vectors=vectors, seed=seed, top_n=TOP_N)

    def scalar(name):
        return float(ds[name].values.reshape(-1)[0]) if name in ds else float("nan")

    def mean_of(values):
        values = values[np.isfinite(values)]
        return float(values.mean()) if len(values) else float("nan")

    row = {m: scalar(m) for m in ("fvu", "l0", "dead_frac", "embedding_recovered",
                                  "embedding_recovered_mean_ablated", "loss_recovered_mean")}
    counts = ds["frequency"].values.reshape(-1) * eval_x.numel()
    full = counts >= TOP_N - 0.5  # token_entropy is capped at log2(count) below TOP_N
    entropy = ds["token_entropy"].values.reshape(-1)
    row["token_entropy"] = mean_of(np.where(full, entropy, np.nan))
    auc = ds["interp_auroc"].values.reshape(-1)
    row["interp_auroc"] = mean_of(auc)
    row["interp_auroc_context"] = mean_of(ds["interp_auroc_context"].values.reshape(-1))
    special = special_latents(ds["top_position"].values.reshape(auc.shape[0], -1), eval_x.shape[1])
    live = counts > 0
    row["special_frac"] = float(special[live].mean()) if live.any() else float("nan")
    row["interp_auroc_text"] = mean_of(auc[~special])
    row["train_cpu_seconds"] = train_cpu
    row["train_tokens_per_cpu_s"] = len(vectors) * cfg["sae_epochs"] / max(train_cpu, 1e-9)
    return row


# ----------------------------------------------------------------------------- summary

def summarise(rows: list[dict], cfg: dict) -> dict:
    variants, layers = cfg["variants"], cfg["layers"]
    per = {}
    for v in variants:
        for layer in layers:
            sel = [r for r in rows if r["variant"] == v and r["layer"] == layer]
            per[f"{v}/{layer}"] = {m: interval([r[m] for r in sel]) for m in METRICS}
    tests = {}
    for v in variants:
        if v == "trained":
            continue
        for layer in layers:
            a = [r for r in rows if r["variant"] == "trained" and r["layer"] == layer]
            b = [r for r in rows if r["variant"] == v and r["layer"] == layer]
            for m, margin in MARGINS.items():
                t = tost([r[m] for r in a], [r[m] for r in b], margin)
                t["text"] = equivalence_text(t)
                if m in INTERP_SIGN or m == "interp_auroc_text":
                    t["reading"] = reading(t, INTERP_SIGN.get(m, 1))
                tests[f"{v}/{layer}/{m}"] = t
    # M2: each init scheme against BERT's init, on interp_auroc.
    for v in INITS:
        if v not in variants or "init" not in variants:
            continue
        for layer in layers:
            a = [r["interp_auroc"] for r in rows if r["variant"] == "init" and r["layer"] == layer]
            b = [r["interp_auroc"] for r in rows if r["variant"] == v and r["layer"] == layer]
            t = tost(a, b, MARGINS["interp_auroc"])
            t["text"] = equivalence_text(t)
            tests[f"{v}-vs-init/{layer}/interp_auroc"] = t
    return {"variants": per, "tests": tests, "verdicts": verdicts(tests, cfg, rows)}


def _overall(per_layer: dict, yes: str, no: str) -> str:
    values = list(per_layer.values())
    return yes if all(v == yes for v in values) else no if all(v == no for v in values) else "mixed"


def verdicts(tests: dict, cfg: dict, rows: list[dict]) -> dict:
    """M1–M3 of :data:`CRITERIA` from the tests."""
    out: dict = {}
    layers, variants = cfg["layers"], cfg["variants"]
    randoms = [v for v in ("init", "rerandomised") if v in variants]
    for name, metric in (("M1", "interp_auroc"), ("M1_text", "interp_auroc_text")):
        if not randoms:
            break
        per_layer = {}
        for layer in layers:
            auc = [tests[f"{v}/{layer}/{metric}"]["reading"] for v in randoms]
            ent = [tests[f"{v}/{layer}/token_entropy"]["reading"] for v in randoms]
            per_layer[layer] = ("fails" if "less interpretable" in auc else
                                "holds" if all(r == "as interpretable" for r in auc + ent)
                                else "inconclusive")
        out[name] = {"per_layer": per_layer, "overall": _overall(per_layer, "holds", "fails")}
    inits = [v for v in INITS if v in variants]
    if inits and "init" in variants:
        per_layer = {}
        for layer in layers:
            drops = []
            for v in inits:
                vs_init = tests[f"{v}-vs-init/{layer}/interp_auroc"]
                vs_trained = tests[f"{v}/{layer}/interp_auroc"]
                drops.append(all(t["verdict"] == "different" and t["diff"] < 0
                                 for t in (vs_init, vs_trained)))
            per_layer[layer] = "appears" if all(drops) else "absent" if not any(drops) else "partly"
        out["M2"] = {"per_layer": per_layer, "overall": (
            "appears" if all(v == "appears" for v in per_layer.values()) else
            "absent" if all(v == "absent" for v in per_layer.values()) else "mixed")}
    rho = spearman([r["interp_auroc"] for r in rows], [r["token_r2"] for r in rows])
    out["M3"] = {"spearman": rho, "overall": "holds" if rho >= 0.5 else "fails"}
    return out


# ----------------------------------------------------------------------------- figures

COLOURS = {"trained": "black", "init": "tab:blue", "rerandomised": "tab:orange",
           "rerandomised-except-embeddings": "tab:brown", "control": "tab:green",
           "init:xavier:0": "tab:purple", "init:kaiming:0": "tab:red", "init:kaiming:1": "tab:pink"}
PANELS = ("interp_auroc", "interp_auroc_context", "token_entropy", "fvu", "dead_frac",
          "embedding_recovered", "special_frac", "token_r2")


def plot_metrics(summary: dict, cfg: dict, path: Path) -> Path:
    fig, axes = plt.subplots(2, 4, figsize=(13, 6))
    variants, layers = cfg["variants"], cfg["layers"]
    for ax, m in zip(axes.ravel(), PANELS):
        for j, v in enumerate(variants):
            xs = np.arange(len(layers)) + (j - len(variants) / 2) * 0.07
            s = [summary["variants"][f"{v}/{layer}"][m] for layer in layers]
            mean = np.array([x["mean"] for x in s])
            err = np.array([[x["mean"] - x["lo"] for x in s], [x["hi"] - x["mean"] for x in s]])
            ax.errorbar(xs, mean, yerr=np.nan_to_num(err), color=COLOURS.get(v, "grey"),
                        marker="o", ms=4, capsize=2, lw=1, label=v)
        if m == "embedding_recovered":
            base = [summary["variants"][f"trained/{layer}"]["embedding_recovered_mean_ablated"]["mean"]
                    for layer in layers]
            ax.plot(range(len(layers)), base, color="grey", ls=":", label="trained, mean-ablated")
        if m == "token_entropy":
            ax.axhline(summary["null_token_entropy"], color="grey", ls=":")
        ax.set_xticks(range(len(layers)), [f"layer {layer}" for layer in layers], fontsize=7)
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("MiniLM: TopK SAEs on the residual stream, trained vs random variants "
                 "(mean, 95 % interval over SAE seeds)", fontsize=9)
    return save_figure(fig, path, dpi=100, tight=True)


def plot_mechanism(rows: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, m in zip(axes, ("interp_auroc", "token_entropy")):
        for v in dict.fromkeys(r["variant"] for r in rows):
            sel = [r for r in rows if r["variant"] == v]
            ax.scatter([r["token_r2"] for r in sel], [r[m] for r in sel], s=14,
                       color=COLOURS.get(v, "grey"), label=v)
        ax.set_xlabel("token_r2 (variance explained by the current token)", fontsize=8)
        ax.set_ylabel(m, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.suptitle("MiniLM: interpretability of SAE latents against the token code", fontsize=9)
    return save_figure(fig, path, dpi=100, tight=True)


# ----------------------------------------------------------------------------- main

def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    start, cpu0 = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    (out / "criteria.txt").write_text(CRITERIA)  # before anything is measured
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(cfg, size, out, figures, start, cpu0)
    finally:
        torch.set_num_threads(threads)


def _run(cfg, size, out, figures, start, cpu0) -> dict:
    trained = landscape.build_model("minilm", context=cfg["context"])
    kw = dict(seed=0, in_shape=trained.in_shape, tokenizer=trained.tokenizer)
    train_x, _ = landscape.load_dataset("english", n=cfg["train_windows"], split="train", **kw)
    eval_x, _ = landscape.load_dataset("english", n=cfg["eval_windows"], split="test", **kw)
    tokens = eval_x.reshape(-1).numpy()
    rng = np.random.default_rng(0)
    null = float(np.mean([_entropy(rng.choice(tokens, TOP_N, replace=False)) for _ in range(500)]))
    print(f"MiniLM, {size}: {len(train_x)} training windows x {cfg['context']} = {train_x.numel()} "
          f"tokens, {len(eval_x)} evaluation windows ({eval_x.numel()} tokens)", flush=True)
    rows, extraction = [], {}
    for v in cfg["variants"]:
        model = build_variant(trained, v)
        t0, c0 = time.time(), time.process_time()
        cache = cache_activations(model, train_x, cfg["layers"], cfg["batch"])
        extraction[v] = {"seconds": time.time() - t0, "cpu_seconds": time.process_time() - c0,
                         "tokens": int(train_x.numel())}
        for layer in cfg["layers"]:
            name = resolve_layer(model, layer)
            r2 = token_r2(cache[layer], train_x)
            for seed in range(cfg["seeds"]):
                row = sae_row(model, name, cache[layer], train_x, eval_x, cfg, seed)
                row.update(variant=v, layer=layer, module=name, seed=seed, token_r2=r2)
                rows.append(row)
                print(f"{v:>16s} layer {layer} seed {seed}: fvu {row['fvu']:.3f} dead "
                      f"{row['dead_frac']:.2f} entropy {row['token_entropy']:.2f} auroc "
                      f"{row['interp_auroc']:.3f}/{row['interp_auroc_context']:.3f} special "
                      f"{row['special_frac']:.2f} emb {row['embedding_recovered']:.3f} r2 {r2:.3f} "
                      f"[{time.time() - start:.0f} s]", flush=True)
        del cache
    summary = summarise(rows, cfg)
    summary.update(size=size, config=dict(cfg), margins=MARGINS, criteria=CRITERIA,
                   null_token_entropy=null, extraction=extraction, rows=rows,
                   tokens={"sae_train": int(train_x.numel()), "eval": int(eval_x.numel()),
                           "sae_train_passes": int(train_x.numel()) * cfg["sae_epochs"]},
                   threads=torch.get_num_threads())
    summary["figures"] = [str(plot_metrics(summary, cfg, figures / "q7_minilm_metrics.png")),
                          str(plot_mechanism(rows, figures / "q7_minilm_mechanism.png"))]
    with open(out / "rows.csv", "w") as fh:
        keys = list(rows[0])
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(str(r[k]) for k in keys) + "\n")
    timing(summary, start, cpu0)
    write_summary(out, summary)
    return summary


def _entropy(values) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv, full_help="every layer, 5 seeds, larger SAEs")
    print(CRITERIA)
    summary = run(size, out, figures)
    cols = ("fvu", "dead_frac", "token_entropy", "interp_auroc", "interp_auroc_context",
            "interp_auroc_text", "special_frac", "embedding_recovered", "token_r2")
    print("variant/layer: " + ", ".join(cols) + " (mean [95 % interval])")
    for key, per in summary["variants"].items():
        print(f"{key:>20s} " + " ".join(f"{per[m]['mean']:.3f}[{per[m]['lo']:.3f},{per[m]['hi']:.3f}]"
                                        for m in cols))
    for key, t in summary["tests"].items():
        if key.rsplit("/", 1)[1] in (*INTERP_SIGN, "interp_auroc_text", "fvu", "embedding_recovered"):
            print(f"  {key}: {t['text']}" + (f" -> {t['reading']}" if "reading" in t else ""))
    print(json.dumps(summary["verdicts"], indent=1))
    print(f"{summary['seconds']:.1f} s wall, {summary['cpu_seconds']:.1f} s CPU; results in {out}")
    return summary


if __name__ == "__main__":
    main()
