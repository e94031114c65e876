"""Q7: do SAEs tell trained networks from random ones?

The claim under test (Heap et al. 2025, arXiv 2501.17727): sparse autoencoders
trained on the activations of randomly initialised transformers give latents that
look as interpretable, by automated-interpretability and SAE quality metrics, as
those of trained transformers.  Here, offline on a CPU:

A. **Their comparison** on a byte-level transformer trained in this script on the
   ``pysource`` corpus (its held-out bits/byte against the unigram baseline are
   reported): variants ``trained``, ``init`` (step 0: the same recipe and seed
   untrained; other weight seeds for seeds > 0), ``rerandomised`` (every tensor
   re-drawn with its own mean and std), ``rerandomised-except-embeddings`` (Heap
   et al.'s re-randomised; --quick and --full only, to fit the default's CPU
   budget), ``control`` (trained, token-embedding table replaced
   by Gaussian noise of the same scale), at the residual stream after each block,
   with a TopK SAE per (variant, layer, seed): every quality metric (fvu, cosine,
   l0, dead_frac, dense_frac, loss_recovered_mean/zero, kl) and interpretability
   metric (token_entropy, interp_auroc, interp_auroc_context) of
   :func:`landscape.sae_metrics`.
B. **Beyond their limitations, initialisation**: the untrained transformer under
   other schemes and bias scales (``init:SCHEME:S`` variants), last block.
C. **Beyond their limitations, other architectures**: ``cnn`` and ``resnet18`` on
   digits through ``landscape train`` / ``landscape sae`` (variants trained and
   init): quality, label entropy of each latent's top images, and the
   max-activation reliability metrics of the most frequent latents.

Every seed trains its own network (transformer and digits models alike: weight seed,
data order and SAE seed), so the trained side's spread is that of independently trained
networks, not of SAE seeds alone; seed s's ``init``, ``control`` and ``noise-input`` derive
from trained network s.  For every metric: trained minus random (mean over seeds),
Cohen's d with a bootstrap 95 % interval over seeds, the seed-level AUROC (5 trained
against 5 random values: 1 or 0 is a perfect separation), and an equivalence test
(TOST, ``_common.tost``, Welch over seeds) at the metric's margin in ``MARGINS``, fixed
before the run: a metric "does not separate" only where it is equivalent within its
margin; otherwise a difference is "not detected", with the power at the margin.

Mechanism, tested by predictions that could fail: a random transformer's residual
stream is dominated by its input token's embedding (a fixed random code per
byte), so SAE latents become token detectors whatever the training.  Measured by
``token_r2``, the share of a layer's activation variance explained by the
current token (between-token variance over total).  Predictions: (1) across every
(variant, layer, seed), ``interp_auroc`` rises and ``token_entropy`` falls with
``token_r2``; (2) the ``control``, whose noise embedding is still one fixed
vector per byte, keeps token identity and with it latents as "interpretable" as
the trained network's; (3) ``noise-input`` (the trained network fed fresh
Gaussian noise at every position instead of its embedding, so no token identity
at all) has ``token_r2`` near 0, ``interp_auroc`` near 0.5 and ``token_entropy``
near that of 32 random positions.

``interp_auroc_context`` (the detection score whose explanations may also name a token
seen among the last 32 positions) is held to the same rules as ``interp_auroc``
(margin 0.02).  Criterion, fixed before its first run: if the random transformers'
latents look interpretable only as byte detectors while the trained ones also carry
context, crediting context widens the gap.  Per (random variant, layer), the widening
is ``(trained − random) of interp_auroc_context − (trained − random) of interp_auroc``,
paired by seed (``context_widening``): "held" when its mean over seeds is at least
0.02 and its 95 % t-interval excludes 0, "not held" when the interval lies below
+0.02, "undecided" otherwise; prediction (3) extends to it (``noise-input`` near 0.5).

Writes results/q7_sae_random_vs_trained/ (rows.csv, summary.json) and
figures/q7_*.png.

    python experiments/q7_sae_random_vs_trained.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import equivalence_text, parse_args, save_figure, tost, write_summary
from torch import nn

import landscape
from landscape.data import unigram_bits
from landscape.sae import layer_vectors
from landscape.train import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q7_sae_random_vs_trained"
VARIANTS = ("trained", "init", "rerandomised", "rerandomised-except-embeddings", "control",
            "noise-input")
RANDOM = ("init", "rerandomised", "rerandomised-except-embeddings")
QUALITY = ("fvu", "cosine", "l0", "dead_frac", "dense_frac", "loss_recovered_mean",
           "loss_recovered_zero", "kl")
INTERP = ("token_entropy", "interp_auroc", "interp_auroc_context")
LOSS_METRICS = ("loss_recovered_mean", "loss_recovered_zero", "kl")
IMAGE_METRICS = ("fvu", "cosine", "l0", "dead_frac", "dense_frac", "loss_recovered_mean",
                 "loss_recovered_zero", "kl", "label_entropy", "rho", "p_hit", "n_maxima",
                 "dist_to_data", "gain", "topk_compactness", "morans_i")
TOP_N = 32  # tokens / images at a latent's top activations (sae_metrics' top_n)
# Equivalence margins, fixed before the run, in each metric's own units: the smallest
# trained-minus-random difference that would count as a difference (about a tenth of the
# range the metric spans across this script's conditions).
MARGINS = {"fvu": 0.01, "cosine": 0.005, "l0": 0.5, "dead_frac": 0.05, "dense_frac": 0.02,
           "loss_recovered_mean": 0.05, "loss_recovered_zero": 0.05, "kl": 0.005,
           "token_entropy": 0.25, "interp_auroc": 0.02, "interp_auroc_context": 0.02,
           "token_r2": 0.03, "label_entropy": 0.25,
           "rho": 0.1, "p_hit": 0.05, "n_maxima": 1.0, "dist_to_data": 0.25, "gain": 2.0,
           "topk_compactness": 0.1, "morans_i": 0.1}

SIZES = {
    "quick": dict(seeds=2, tf=dict(width=16, depth=2, heads=2, context=16), variants=VARIANTS,
                  train_windows=640, train_batch=32, test_windows=64, sae_windows=96,
                  expansion=4, k=4, sae_batch=256, sae_epochs=2,
                  inits=("xavier:0",), images={"cnn": dict(epochs=1, width=4, samples=256)},
                  image_samples=64, image_layer={"cnn": "act3"}, image_sae_epochs=2,
                  maxact_latents=0),
    "default": dict(seeds=5, tf=dict(width=64, depth=2, heads=4, context=64),
                    variants=("trained", "init", "rerandomised", "control", "noise-input"),
                    train_windows=20_000, train_batch=32, test_windows=512, sae_windows=512,
                    expansion=8, k=16, sae_batch=512, sae_epochs=3,
                    inits=("default:1", "xavier:0", "kaiming:0", "kaiming:1"),
                    images={"cnn": dict(epochs=8, width=8), "resnet18": dict(epochs=2)},
                    image_samples=384, image_layer={"cnn": "act3", "resnet18": "layer2"},
                    image_sae_epochs=None, maxact_latents=2),
    "full": dict(seeds=5, tf=dict(width=128, depth=2, heads=4, context=64), variants=VARIANTS,
                 train_windows=96_000, train_batch=32, test_windows=1024, sae_windows=2048,
                 expansion=16, k=32, sae_batch=1024, sae_epochs=4,
                 inits=("default:0.1", "default:1", "xavier:0", "xavier:1", "kaiming:0",
                        "kaiming:1", "orthogonal:0", "orthogonal:1"),
                 images={"cnn": dict(epochs=8, width=16), "resnet18": dict(epochs=6)},
                 image_samples=1024, image_layer={"cnn": "act3", "resnet18": "layer2"},
                 image_sae_epochs=None, maxact_latents=8),
}


# ----------------------------------------------------------------------------- helpers

def token_r2(vectors: torch.Tensor, tokens: torch.Tensor) -> float:
    """Share of the variance (about the mean) of ``vectors (N, d)`` explained by the
    token at each position, adjusted for the number of tokens seen (as the adjusted
    R² of a one-way analysis of variance): with ``R² = Σ_t n_t ‖μ_t − μ‖² / Σ_i ‖v_i − μ‖²``
    over the ``K`` distinct tokens, ``1 − (1 − R²)(N − 1)/(N − K)``.  Its expectation
    is 0 when the vectors do not depend on the token (the raw R² would read
    ``(K − 1)/(N − 1)``), 1 when they are a function of it."""
    v = vectors.double()
    t = tokens.reshape(-1).long()
    mu = v.mean(0)
    sums = torch.zeros(256, v.shape[1], dtype=torch.float64).index_add_(0, t, v)
    counts = torch.bincount(t, minlength=256).double()
    seen = counts > 0
    means = sums[seen] / counts[seen, None]
    between = float((counts[seen] * (means - mu).pow(2).sum(1)).sum())
    total = float((v - mu).pow(2).sum())
    n, k = len(t), int(seen.sum())
    if total <= 0 or n <= k:
        return float("nan")
    return 1 - (1 - between / total) * (n - 1) / (n - k)


def entropy_bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def null_entropy(values: np.ndarray, n: int = TOP_N, draws: int = 500, seed: int = 0) -> float:
    """Mean entropy (bits) of ``n`` of ``values`` drawn at random without replacement:
    what ``token_entropy``/``label_entropy`` read for a latent unrelated to them."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values).reshape(-1)
    return float(np.mean([entropy_bits(rng.choice(values, n, replace=False)) for _ in range(draws)]))


def cohens_d(a, b) -> float:
    """(mean b − mean a) / pooled std (ddof 1); ±inf when both groups are constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = b.mean() - a.mean()
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                       / (len(a) + len(b) - 2))
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return float(diff / pooled)


def auroc(neg, pos) -> float:
    """P(pos > neg) + ½ P(pos = neg): 1 when every ``pos`` value exceeds every ``neg``."""
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    greater = (pos[:, None] > neg[None, :]).mean()
    equal = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * equal)


def effect(trained, other, boot: int = 2000, seed: int = 0) -> dict:
    """Other minus trained: difference of means ± its standard error, Cohen's d with a
    bootstrap 95 % interval over seeds (finite draws only), and the seed-level AUROC."""
    a = np.asarray([v for v in trained if np.isfinite(v)], float)
    b = np.asarray([v for v in other if np.isfinite(v)], float)
    if len(a) < 2 or len(b) < 2:
        return {"diff": float("nan"), "se": float("nan"), "d": float("nan"), "d_lo": float("nan"),
                "d_hi": float("nan"), "auroc": float("nan")}
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, len(a), (boot, len(a)))]
    rb = b[rng.integers(0, len(b), (boot, len(b)))]
    pooled = np.sqrt(((len(a) - 1) * ra.var(1, ddof=1) + (len(b) - 1) * rb.var(1, ddof=1))
                     / (len(a) + len(b) - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ds = (rb.mean(1) - ra.mean(1)) / pooled
    finite = ds[np.isfinite(ds)]
    lo, hi = (np.percentile(finite, [2.5, 97.5]) if len(finite) > boot // 2
              else (float("nan"), float("nan")))
    return {"diff": float(b.mean() - a.mean()),
            "se": float(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))),
            "d": cohens_d(a, b), "d_lo": float(lo), "d_hi": float(hi), "auroc": auroc(a, b)}


def stat(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


class NoiseEmbedding(nn.Module):
    """Stands in for a token embedding: ignores the token ids and returns fresh
    i.i.d. N(mean, std²) vectors at every position (``mean``, ``std`` those of the
    table it replaces), so nothing downstream can know the token."""

    def __init__(self, table: torch.Tensor, seed: int):
        super().__init__()
        self.mean, self.std = float(table.double().mean()), float(table.double().std())
        self.width = table.shape[1]
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(*tokens.shape, self.width, generator=self.gen)
        return self.mean + self.std * noise


def noise_input(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose token embedding is :class:`NoiseEmbedding`."""
    import copy

    out = copy.deepcopy(model)
    out.embed = NoiseEmbedding(model.embed.weight.detach(), seed)
    return out


def variant(trained: nn.Module, name: str, seed: int) -> nn.Module:
    """The transformer of condition ``name`` for weight seed ``seed``: ``init`` and
    ``init:...`` rebuild the recipe with that seed (seed 0 is the trained model's own
    step 0); the re-drawn variants draw with it."""
    if name == "noise-input":
        return noise_input(trained, seed)
    if name == "trained":
        return trained
    if name.startswith("init"):
        return landscape.make_variant(trained, name, recipe={"seed": seed})
    return landscape.make_variant(trained, name, seed=seed)


def scalar(ds, name: str) -> float:
    return float(ds[name].values.reshape(-1)[0]) if name in ds else float("nan")


def latent_mean(ds, name: str) -> float:
    if name not in ds:
        return float("nan")
    v = ds[name].values.reshape(-1)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


# ----------------------------------------------------------------------------- part A / B

def train_transformer(cfg: dict, log, seed: int = 0) -> tuple[nn.Module, dict]:
    """The script's own transformer, weight seed and data order ``seed``: the recipe's
    defaults (AdamW 3e-3, cosine with warm-up, clipping, weight decay 0.1) on
    ``train_windows`` windows of pysource."""
    tf = cfg["tf"]
    model = landscape.build_model("transformer", seed=seed, **tf)
    x, y = landscape.load_dataset("pysource", n=cfg["train_windows"], split="train", seed=0,
                                  in_shape=(tf["context"],))
    xt, yt = landscape.load_dataset("pysource", n=cfg["test_windows"], split="test", seed=0,
                                    in_shape=(tf["context"],))
    t0, c0 = time.time(), time.process_time()
    steps = math.ceil(len(x) / cfg["train_batch"])
    history, _ = train(model, x, y, xt, yt, epochs=1, optimizer="adamw", lr=3e-3,
                       batch_size=cfg["train_batch"], seed=seed, weight_decay=0.1, schedule="cosine",
                       warmup=min(100, steps // 10), clip=1.0)
    bits = history["test_loss"][-1] / math.log(2)
    uni = unigram_bits(x, xt)
    info = {"steps": steps, "test_bits_per_byte": bits, "unigram_bits_per_byte": uni,
            "below_unigram": 1 - bits / uni, "test_accuracy": history["test_accuracy"][-1],
            "seconds": time.time() - t0, "cpu_seconds": time.process_time() - c0,
            "parameters": sum(p.numel() for p in model.parameters())}
    log(f"transformer {tf}, seed {seed}: {steps} steps, held-out {bits:.3f} bits/byte, unigram {uni:.3f} "
        f"({100 * info['below_unigram']:.1f} % below), {info['cpu_seconds']:.0f} CPU s")
    model.eval()
    return model, info


def sae_row(model: nn.Module, layer: str, train_x, eval_x, cfg: dict, seed: int) -> dict:
    """Train one SAE on ``layer`` of ``model`` (training windows) and measure it
    (evaluation windows), as ``landscape sae`` does; plus ``token_r2`` of the layer."""
    vectors, _ = layer_vectors(model, layer, train_x)
    sae = landscape.train_sae(vectors, expansion=cfg["expansion"], k=cfg["k"], seed=seed,
                              epochs=cfg["sae_epochs"], batch_size=cfg["sae_batch"])
    ds = landscape.sae_metrics(model, sae, eval_x, None, layer, train_x=train_x,
                               train_vectors=vectors, seed=seed, top_n=TOP_N)
    eval_vectors, _ = layer_vectors(model, layer, eval_x)
    row = {name: scalar(ds, name) for name in QUALITY}
    row.update({name: latent_mean(ds, name) for name in INTERP})
    # token_entropy is capped at log2(count) for a latent active fewer than TOP_N times:
    # the headline mean takes only latents with TOP_N activations or more.
    counts = ds["frequency"].values.reshape(-1) * eval_x.numel()
    full = counts >= TOP_N - 0.5
    entropy = ds["token_entropy"].values.reshape(-1)
    row["token_entropy_all"] = row["token_entropy"]
    row["token_entropy"] = float(np.nanmean(entropy[full])) if full.any() else float("nan")
    row["full_latent_frac"] = float(full.mean())
    row["token_r2"] = token_r2(eval_vectors, eval_x)
    row["train_token_r2"] = token_r2(vectors, train_x)
    auc = ds["interp_auroc"].values.reshape(-1)
    row["interp_scored_frac"] = float(np.isfinite(auc).mean())
    row["latent_token_entropy"] = np.where(full, entropy, np.nan).tolist()
    row["latent_interp_auroc"] = auc.tolist()
    row["latent_interp_auroc_context"] = (ds["interp_auroc_context"].values.reshape(-1).tolist()
                                          if "interp_auroc_context" in ds else [])
    return row


def run_transformer(cfg: dict, log) -> tuple[list[dict], dict]:
    networks = []
    info: dict = {}
    context = cfg["tf"]["context"]
    # SAE data: held-out windows (the test split, never seen in training).
    x, _ = landscape.load_dataset("pysource", n=cfg["sae_windows"], split="test", seed=1,
                                  in_shape=(context,))
    n_train = (3 * len(x)) // 4
    train_x, eval_x = x[:n_train], x[n_train:]
    info["null_token_entropy"] = null_entropy(eval_x.numpy())
    info["sae_train_vectors"] = n_train * context
    layers = [f"blocks.{i}" for i in range(cfg["tf"]["depth"])]
    rows = []
    for seed in range(cfg["seeds"]):
        trained, net_info = train_transformer(cfg, log, seed)
        networks.append(net_info)
        for name in cfg["variants"]:
            model = variant(trained, name, seed)
            for layer in layers:
                t0 = time.process_time()
                row = {"part": "variants", "variant": name, "layer": layer, "seed": seed,
                       **sae_row(model, layer, train_x, eval_x, cfg, seed)}
                row["cpu_seconds"] = time.process_time() - t0
                rows.append(row)
                log(f"  seed {seed} {name:>30s} {layer}: fvu {row['fvu']:.3f}, dead "
                    f"{row['dead_frac']:.2f}, lr(mean) {row['loss_recovered_mean']:.3f}, "
                    f"token entropy {row['token_entropy']:.2f}, interp AUROC "
                    f"{row['interp_auroc']:.3f}, token R2 {row['token_r2']:.3f}")
        for spec in cfg["inits"]:
            name = f"init:{spec}"
            model = variant(trained, name, seed)
            layer = layers[-1]
            row = {"part": "inits", "variant": name, "layer": layer, "seed": seed,
                   **sae_row(model, layer, train_x, eval_x, cfg, seed)}
            rows.append(row)
            log(f"  seed {seed} {name:>30s} {layer}: fvu {row['fvu']:.3f}, token entropy "
                f"{row['token_entropy']:.2f}, interp AUROC {row['interp_auroc']:.3f}, "
                f"token R2 {row['token_r2']:.3f}")
    # Network 0's numbers at the top level; every network's in "networks".
    info = networks[0] | info | {"networks": networks}
    for key in ("test_bits_per_byte", "below_unigram", "test_accuracy"):
        info[f"{key}_over_networks"] = stat([n[key] for n in networks])
    return rows, info


# ----------------------------------------------------------------------------- part C

def _cli(args: list[str]) -> str:
    from click.testing import CliRunner

    from landscape.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"landscape {' '.join(args)} failed:\n{result.output}")
    return result.output


def run_images(cfg: dict, work: Path, log) -> tuple[list[dict], dict]:
    """``landscape train`` once per architecture (seed 0), then per seed ``landscape
    sae`` on the checkpoint (trained) and on the untrained recipe with that weight
    seed (init); the seed also draws the SAE and the data subset."""
    rows, info = [], {}
    _, labels = landscape.load_dataset("digits", split="train")
    info["null_label_entropy"] = null_entropy(labels.numpy())
    for model_name, opts in cfg["images"].items():
        info[model_name] = {"test_accuracy": [], "epochs": opts["epochs"], "train_cpu_seconds": 0.0,
                            "layer": cfg["image_layer"][model_name]}
        arch = ["--model", model_name, "--in-shape", "1x16x16"]
        if "width" in opts:
            arch += ["--width", str(opts["width"])]
        common = ["--dataset", "digits", "--layer", cfg["image_layer"][model_name],
                  "--samples", str(cfg["image_samples"]), "--expansion", str(cfg["expansion"]),
                  "--k", str(cfg["k"]), "--maxact-latents", str(cfg["maxact_latents"])]
        if cfg["image_sae_epochs"]:  # else the command's default: enough epochs for 384 steps
            common += ["--epochs", str(cfg["image_sae_epochs"])]
        for seed in range(cfg["seeds"]):
            # One independently trained network per seed (weights, data order).
            ckpt = work / f"{model_name}_s{seed}.pt"
            c0 = time.process_time()
            # --threads: the command's default (every usable core) would outlive it and run
            # every later analysis of this process on two threads, which on a shared machine
            # multiplied the image part's time several-fold.
            args = ["train", "--model", model_name, "--dataset", "digits", "--in-shape", "1x16x16",
                    "--epochs", str(opts["epochs"]), "--seed", str(seed), "--out", str(ckpt),
                    "--overwrite", "--threads", str(torch.get_num_threads())]
            for key in ("width", "samples"):
                if key in opts:
                    args += [f"--{key}", str(opts[key])]
            _cli(args)
            meta = torch.load(ckpt, map_location="cpu", weights_only=False)["meta"]
            info[model_name]["test_accuracy"].append(meta["test_accuracy"])
            info[model_name]["train_cpu_seconds"] += time.process_time() - c0
            log(f"{model_name} seed {seed}: trained {opts['epochs']} epochs, test accuracy "
                f"{meta['test_accuracy']:.3f}")
            for name in ("trained", "init"):
                out = work / f"{model_name}_{name}_s{seed}.nc"
                # trained: the checkpoint; init: the same recipe untrained, weight seed
                # ``seed`` (no checkpoint).  The seed also draws the SAE and the data.
                source = (["--model", model_name, "--checkpoint", str(ckpt)] if name == "trained"
                          else arch)
                c0 = time.process_time()
                _cli(["sae", *source, *common, "--seed", str(seed), "--out", str(out),
                      "--overwrite", "--threads", str(torch.get_num_threads())])
                part = landscape.load(out, kind="sae").isel(variant=0)
                row = {"part": "images", "model": model_name, "variant": name,
                       "layer": cfg["image_layer"][model_name], "seed": seed}
                for metric in IMAGE_METRICS:
                    row[metric] = (scalar(part, metric) if metric in QUALITY
                                   else latent_mean(part, metric))
                config = json.loads(part.attrs["config"])
                row["epochs"] = config["sae"]["epochs"]
                row["bn"] = part.attrs.get("bn", "")
                row["cpu_seconds"] = time.process_time() - c0
                rows.append(row)
                log(f"  {model_name} seed {seed} {name:>8s}: fvu {row['fvu']:.3f}, dead "
                    f"{row['dead_frac']:.2f}, label entropy {row['label_entropy']:.2f}, rho "
                    f"{row['rho']:.2f}, p_hit {row['p_hit']:.2f} ({row['epochs']} SAE epochs, "
                    f"bn {row['bn']})")
    return rows, info


# ----------------------------------------------------------------------------- summary

def summarise(rows: list[dict], cfg: dict) -> dict:
    out: dict = {"variants": {}, "effects": {}, "inits": {}, "images": {}, "image_effects": {},
                 "mechanism": {}, "latent_auroc": {}}
    tf_rows = [r for r in rows if r["part"] in ("variants", "inits")]
    layers = sorted({r["layer"] for r in tf_rows})
    metrics = (*QUALITY, *INTERP, "token_r2")
    for layer in layers:
        for name in cfg["variants"]:
            sel = [r for r in tf_rows if r["part"] == "variants" and r["variant"] == name
                   and r["layer"] == layer]
            out["variants"][f"{name}/{layer}"] = {m: stat([r[m] for r in sel]) for m in metrics}
        trained = [r for r in tf_rows if r["variant"] == "trained" and r["layer"] == layer]
        for name in cfg["variants"][1:]:
            sel = [r for r in tf_rows if r["part"] == "variants" and r["variant"] == name
                   and r["layer"] == layer]
            out["effects"][f"{name}/{layer}"] = {m: effect([r[m] for r in trained], [r[m] for r in sel])
                                                 for m in metrics}
            # Latent level: each latent's token entropy / interp AUROC, trained against
            # this variant, seed by seed (the same SAE seed on both sides).
            for m in INTERP:
                per_seed = []
                for t in trained:
                    o = next((r for r in sel if r["seed"] == t["seed"]), None)
                    if o is None:
                        continue
                    a = np.asarray(t[f"latent_{m}"], float)
                    b = np.asarray(o[f"latent_{m}"], float)
                    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
                    if len(a) and len(b):
                        per_seed.append(auroc(a, b))
                out["latent_auroc"][f"{name}/{layer}/{m}"] = stat(per_seed)
    inits = [r for r in tf_rows if r["part"] == "inits"]
    last = layers[-1] if layers else None
    trained_last = [r for r in tf_rows if r["variant"] == "trained" and r["layer"] == last]
    for name in sorted({r["variant"] for r in inits}):
        sel = [r for r in inits if r["variant"] == name]
        out["inits"][name] = {m: stat([r[m] for r in sel]) for m in metrics}
        out["inits"][name]["effect"] = {m: effect([r[m] for r in trained_last], [r[m] for r in sel])
                                        for m in metrics}
    # Mechanism: across every transformer SAE, how the interpretability metrics follow token_r2.
    from scipy.stats import spearmanr

    mech = [r for r in tf_rows if np.isfinite(r["token_r2"])]
    for m in INTERP:
        pairs = [(r["token_r2"], r[m]) for r in mech if np.isfinite(r[m])]
        if len(pairs) > 2:
            rho, p = spearmanr(*zip(*pairs))
            out["mechanism"][f"spearman_token_r2_{m}"] = {"rho": float(rho), "p": float(p),
                                                         "n": len(pairs)}
        no_noise = [(r["token_r2"], r[m]) for r in mech if r["variant"] != "noise-input"
                    and np.isfinite(r[m])]
        if len(no_noise) > 2:
            rho, p = spearmanr(*zip(*no_noise))
            out["mechanism"][f"spearman_token_r2_{m}_without_noise_input"] = {
                "rho": float(rho), "p": float(p), "n": len(no_noise)}
    img = [r for r in rows if r["part"] == "images"]
    for model_name in dict.fromkeys(r["model"] for r in img):
        for name in ("trained", "init"):
            sel = [r for r in img if r["model"] == model_name and r["variant"] == name]
            out["images"][f"{model_name}/{name}"] = {m: stat([r[m] for r in sel])
                                                    for m in (*IMAGE_METRICS, "epochs")}
        t = [r for r in img if r["model"] == model_name and r["variant"] == "trained"]
        o = [r for r in img if r["model"] == model_name and r["variant"] == "init"]
        out["image_effects"][f"{model_name}/init"] = {m: effect([r[m] for r in t], [r[m] for r in o])
                                                      for m in IMAGE_METRICS}
    out["equivalence"] = equivalence(rows, cfg)
    out["context_widening"] = context_widening(tf_rows)
    return out


def context_widening(rows: list[dict], margin: float = MARGINS["interp_auroc_context"]) -> dict:
    """Per ``variant/layer`` of the transformer variants: how much crediting context widens
    the trained-minus-random detection gap, seed by seed (trained network s against
    variant seed s): ``w_s = (t_s − r_s)[interp_auroc_context] − (t_s − r_s)[interp_auroc]``.
    Mean, 95 % t-interval over seeds, and the criterion of the module docstring: "held"
    (mean ≥ ``margin``, interval above 0), "not held" (interval below ``margin``),
    "undecided" otherwise."""
    from scipy import stats

    out = {}
    tf = [r for r in rows if r.get("part", "variants") == "variants"]
    for name, layer in sorted({(r["variant"], r["layer"]) for r in tf if r["variant"] != "trained"}):
        trained = {r["seed"]: r for r in tf if r["variant"] == "trained" and r["layer"] == layer}
        w = []
        for r in tf:
            t = trained.get(r["seed"])
            if r["variant"] == name and r["layer"] == layer and t is not None:
                w.append((t["interp_auroc_context"] - r["interp_auroc_context"])
                         - (t["interp_auroc"] - r["interp_auroc"]))
        w = np.asarray([v for v in w if np.isfinite(v)], float)
        if len(w) < 2:
            out[f"{name}/{layer}"] = {"mean": float("nan"), "lo": float("nan"),
                                      "hi": float("nan"), "n": int(len(w)), "verdict": "untested"}
            continue
        half = stats.t.ppf(0.975, len(w) - 1) * w.std(ddof=1) / math.sqrt(len(w))
        mean, lo, hi = float(w.mean()), float(w.mean() - half), float(w.mean() + half)
        verdict = ("held" if mean >= margin and lo > 0 else "not held" if hi < margin
                   else "undecided")
        out[f"{name}/{layer}"] = {"mean": mean, "lo": lo, "hi": hi, "n": int(len(w)),
                                  "verdict": verdict}
    return out


def equivalence(rows: list[dict], cfg: dict) -> dict:
    """For every random condition and metric with a margin: TOST of random against
    trained (Welch over seeds) at ``MARGINS``, keyed ``condition/layer/metric`` (transformer
    variants and inits) or ``model/init/metric`` (images)."""
    out = {}
    tf = [r for r in rows if r["part"] in ("variants", "inits")]
    for r0 in {(r["variant"], r["layer"]) for r in tf if r["variant"] != "trained"}:
        name, layer = r0
        trained = [r for r in tf if r["variant"] == "trained" and r["layer"] == layer]
        other = [r for r in tf if r["variant"] == name and r["layer"] == layer]
        for m in (*QUALITY, *INTERP, "token_r2"):
            res = tost([r[m] for r in trained], [r[m] for r in other], MARGINS[m])
            out[f"{name}/{layer}/{m}"] = res | {"text": equivalence_text(res)}
    img = [r for r in rows if r["part"] == "images"]
    for model_name in dict.fromkeys(r["model"] for r in img):
        t = [r for r in img if r["model"] == model_name and r["variant"] == "trained"]
        o = [r for r in img if r["model"] == model_name and r["variant"] == "init"]
        for m in IMAGE_METRICS:
            res = tost([r[m] for r in t], [r[m] for r in o], MARGINS[m])
            out[f"{model_name}/init/{m}"] = res | {"text": equivalence_text(res)}
    return dict(sorted(out.items()))


def separating(effects: dict, threshold: float = 1.0) -> dict:
    """Per metric, the conditions in which every random seed lies on one side of every
    trained seed (seed-level AUROC 0 or 1) and the bootstrap interval of d excludes 0."""
    found: dict = {}
    for key, per_metric in effects.items():
        for m, e in per_metric.items():
            if not isinstance(e, dict) or "auroc" not in e:
                continue
            lo, hi = e["d_lo"], e["d_hi"]
            if e["auroc"] in (0.0, 1.0) and np.isfinite(lo) and (lo > 0 or hi < 0) \
                    and abs(e["d"]) >= threshold:
                found.setdefault(m, []).append(key)
    return found


# ----------------------------------------------------------------------------- figures

COLOURS = {"trained": "k", "init": "C0", "rerandomised": "C1", "rerandomised-except-embeddings": "C2",
           "control": "C3", "noise-input": "C7"}


def plot_variants(summary: dict, path: Path) -> Path:
    shown = (*QUALITY, *INTERP, "token_r2")
    layers = sorted({k.split("/")[1] for k in summary["variants"]})
    names = list(dict.fromkeys(k.split("/")[0] for k in summary["variants"]))
    fig, axes = plt.subplots(2, 6, figsize=(16, 5.4))
    for ax, m in zip(axes.flat, shown):
        for i, name in enumerate(names):
            for j, layer in enumerate(layers):
                s = summary["variants"][f"{name}/{layer}"][m]
                x = j + (i - (len(names) - 1) / 2) * 0.12
                ax.errorbar(x, s["mean"], yerr=s["std"], color=COLOURS[name], marker="os"[j % 2],
                            capsize=2, ms=4, label=name if j == 0 else None)
        ax.set_xticks(range(len(layers)), layers, fontsize=7)
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[len(shown) - 1].legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("SAE metrics per transformer variant and layer (mean ± std over seeds)", fontsize=10)
    return save_figure(fig, path, dpi=100, tight=True)


INIT_STYLES = ("C4", "C5", "C6", "C8", "C9", "olive", "teal", "navy")  # init:SCHEME:S, in order


def plot_mechanism(rows: list[dict], info: dict, path: Path) -> Path:
    """Each SAE's mean interpretability metric against its layer's token R²: one colour per
    variant present and per init (``init:SCHEME:S`` apart from one another), marker by layer;
    one legend below for every panel, each panel's own reference line in its corner."""
    tf_rows = [r for r in rows if r["part"] in ("variants", "inits")]
    inits = sorted({r["variant"] for r in tf_rows if r["part"] == "inits"})
    colour = {name: c for name, c in COLOURS.items() if any(r["variant"] == name for r in tf_rows)}
    colour |= {name: INIT_STYLES[i % len(INIT_STYLES)] for i, name in enumerate(inits)}
    layers = sorted({r["layer"] for r in tf_rows})
    markers = {layer: "os^D"[i % 4] for i, layer in enumerate(layers)}
    fig, axes = plt.subplots(1, len(INTERP), figsize=(14, 4.4), layout="constrained")
    for ax, m in zip(axes, INTERP):
        for r in tf_rows:
            if m not in r:  # a summary written before the metric was added
                continue
            ax.scatter(r["token_r2"], r[m], color=colour[r["variant"]], marker=markers[r["layer"]],
                       s=16, alpha=0.85, edgecolors="none")
        if m == "token_entropy":
            ax.axhline(info["null_token_entropy"], color="grey", ls=":", label="32 random positions")
        else:
            ax.axhline(0.5, color="grey", ls=":", label="chance")
        ax.set_xlabel("token R² (variance explained by the current byte)", fontsize=8)
        ax.set_ylabel(f"mean {m} over latents", fontsize=8)
        ax.legend(fontsize=7, loc="upper right" if m == "token_entropy" else "lower right")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=n) for n, c in colour.items()]
    handles += [plt.Line2D([], [], color="0.3", marker=mk, ls="", label=layer)
                for layer, mk in markers.items()]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=min(6, len(handles)),
               frameon=False)
    fig.suptitle("interpretability metrics follow token identity (one point per SAE; inits "
                 f"untrained, {layers[-1]})", fontsize=9)
    return save_figure(fig, path, dpi=100)


def plot_images(summary: dict, info: dict, path: Path) -> Path:
    models = sorted({k.split("/")[0] for k in summary["images"]})
    shown = ("fvu", "dead_frac", "loss_recovered_mean", "label_entropy", "rho", "p_hit",
             "n_maxima", "morans_i")
    fig, axes = plt.subplots(1, len(shown), figsize=(2.1 * len(shown), 3.0))
    for ax, m in zip(axes, shown):
        points = [(i + (j - 0.5) * 0.25, summary["images"][f"{model_name}/{name}"][m], name, i)
                  for i, model_name in enumerate(models)
                  for j, name in enumerate(("trained", "init"))]
        means = np.array([p[1]["mean"] for p in points], dtype=float)
        finite = means[np.isfinite(means)]
        # One model's value must not flatten the others: a metric whose positive means span
        # more than 30x is drawn on a log axis; loss recovered (1 = lossless, 0 = no better
        # than ablation) is held to [-0.5, 1.5], an arrow and its value marking what lies off.
        log_axis = finite.size and finite.min() > 0 and finite.max() / finite.min() > 30
        clip = (-0.5, 1.5) if m.startswith("loss_recovered") else None
        for x, s, name, i in points:
            mean, std = s["mean"], s["std"]
            if clip is not None and np.isfinite(mean) and not clip[0] <= mean <= clip[1]:
                edge = clip[1] if mean > clip[1] else clip[0]
                ax.plot(x, edge, marker="^" if mean > 0 else "v", color=COLOURS[name], ms=6)
                ax.annotate(f"{mean:.3g}", (x, edge), textcoords="offset points",
                            xytext=(3, -10 if mean > 0 else 4), fontsize=6,
                            color=COLOURS[name])
                continue
            yerr = std if not log_axis else [[min(std, 0.9 * mean)], [std]]
            ax.errorbar(x, mean, yerr=yerr, color=COLOURS[name], marker="o", capsize=2, ms=4,
                        label=name if i == 0 else None)
        if log_axis:
            ax.set_yscale("log")
        if clip is not None:
            ax.set_ylim(*clip)
        if m == "label_entropy":
            ax.axhline(info["null_label_entropy"], color="grey", ls=":")
        ax.set_xticks(range(len(models)), models, fontsize=7)
        ax.set_title(m, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.suptitle("SAEs on digits models: trained vs random (init), mean ± std over seeds", fontsize=9)
    return save_figure(fig, path, dpi=100, tight=True)


# ----------------------------------------------------------------------------- main

def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    start, cpu0 = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    lines: list[str] = []

    def log(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    parts = {}
    t0, c0 = time.time(), time.process_time()
    rows, info = run_transformer(cfg, log)
    parts["transformer"] = {"seconds": time.time() - t0, "cpu_seconds": time.process_time() - c0}
    t0, c0 = time.time(), time.process_time()
    image_rows, image_info = run_images(cfg, out, log)
    parts["images"] = {"seconds": time.time() - t0, "cpu_seconds": time.process_time() - c0}
    for part, t in parts.items():
        log(f"{part} part: {t['seconds']:.0f} s wall, {t['cpu_seconds']:.0f} s CPU")
    rows += image_rows
    summary = summarise(rows, cfg)
    summary["transformer"] = info
    summary["image_info"] = image_info
    summary["separating"] = {
        "transformer": separating({k: v for k, v in summary["effects"].items()
                                   if not k.startswith("noise-input")}),
        "images": separating(summary["image_effects"]),
        "inits": separating({k: v["effect"] for k, v in summary["inits"].items()})}
    summary["config"] = {k: v for k, v in cfg.items()}
    summary["size"] = size
    with open(out / "rows.csv", "w") as fh:
        keys = sorted({k for r in rows for k in r if not k.startswith("latent_")})
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join("" if r.get(k) is None else str(r.get(k)) for k in keys) + "\n")
    summary["figures"] = [str(plot_variants(summary, figures / "q7_variants.png")),
                          str(plot_mechanism(rows, info, figures / "q7_mechanism.png")),
                          str(plot_images(summary, image_info, figures / "q7_images.png"))]
    summary["parts"] = parts
    # Per-SAE rows (latent lists left out) so that the figures can be redrawn (replot()).
    summary["rows"] = [{k: v for k, v in r.items() if not k.startswith("latent_")} for r in rows]
    summary["threads"] = torch.get_num_threads()
    summary["seconds"] = time.time() - start
    summary["cpu_seconds"] = time.process_time() - cpu0
    write_summary(out, summary)
    return summary


def replot(out: Path, figures: Path) -> list[Path]:
    """Redraw the figures from a finished run's ``summary.json``."""
    summary = json.loads((Path(out) / "summary.json").read_text())
    figures = Path(figures)
    return [plot_variants(summary, figures / "q7_variants.png"),
            plot_mechanism(summary["rows"], summary["transformer"], figures / "q7_mechanism.png"),
            plot_images(summary, summary["image_info"], figures / "q7_images.png")]


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv, full_help="the full-size default transformer")
    summary = run(size, out, figures)
    print("\nvariant/layer: " + ", ".join(f"{m}" for m in (*QUALITY, *INTERP, "token_r2")))
    for key, per in summary["variants"].items():
        print(f"{key:>40s} " + " ".join(f"{per[m]['mean']:.3f}±{per[m]['std']:.3f}"
                                        for m in (*QUALITY, *INTERP, "token_r2")))
    print("not separating (seed AUROC strictly between 0 and 1): equivalence at the margin")
    effects = {**summary["effects"], **{k: v["effect"] for k, v in summary["inits"].items()},
               **summary["image_effects"]}
    for key, r in summary["equivalence"].items():
        cond, metric = key.rsplit("/", 1)
        e = effects.get(cond if cond in effects else cond.rsplit("/", 1)[0], {}).get(metric)
        if e is not None and 0 < e["auroc"] < 1:
            print(f"  {key}: {r['text']}")
    print("context widening (trained - random gap, interp_auroc_context minus interp_auroc):")
    for key, r in summary["context_widening"].items():
        print(f"  {key}: {r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] {r['verdict']}")
    print("separating (|d| >= 1, interval excludes 0, seed AUROC 0/1):")
    print(json.dumps(summary["separating"], indent=1))
    print(f"{summary['seconds']:.1f} s wall, {summary['cpu_seconds']:.1f} s CPU; results in {out}")
    return summary


if __name__ == "__main__":
    main()
