"""Figures of an ``sae`` result: each metric per variant and layer, the latents'
activation frequencies, and the top contexts of a few latents per variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import plt, save_figure, title

SCALAR_METRICS = ("fvu", "cosine", "l0", "dead_frac", "dense_frac", "loss_recovered_mean",
                  "loss_recovered_zero", "kl")
LINE_INCHES = 0.15  # a line of 7-point monospace text, with its spacing and fallback glyphs
LATENT_METRICS = ("token_entropy", "interp_auroc", "label_entropy", "rho", "p_hit", "n_maxima")


def _metrics_figure(ds, path: Path) -> Path:
    """One panel per metric: bars per layer, one colour per variant (latent
    metrics: the mean over live latents)."""
    names = [n for n in SCALAR_METRICS if n in ds] + [n for n in LATENT_METRICS if n in ds]
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False,
                             layout="constrained")
    variants, layers = list(ds.variant.values), list(ds.layer.values)
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(layers))
    for ax, name in zip(axes.ravel(), names):
        da = ds[name]
        if "latent" in da.dims:
            da = da.mean("latent", skipna=True)
        for i, variant in enumerate(variants):
            values = da.sel(variant=variant).values.astype(float)
            ax.bar(x + (i - (len(variants) - 1) / 2) * width, values, width, label=str(variant))
        ax.set_title(name + (" (mean)" if "latent" in ds[name].dims else ""), fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels([str(v) for v in layers], fontsize=7, rotation=30)
        ax.axhline(0, color="k", lw=0.5)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(title(ds, "SAE metrics per variant and layer"), fontsize=10)
    return save_figure(fig, path)


def _frequency_figure(ds, path: Path) -> Path:
    """Histograms of log10 activation frequency per latent; dead latents counted apart."""
    layers = list(ds.layer.values)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.2), squeeze=False,
                             layout="constrained")
    for ax, layer in zip(axes.ravel(), layers):
        lowest = []
        for variant in ds.variant.values:
            freq = ds.frequency.sel(variant=variant, layer=layer).values.astype(float)
            freq = freq[np.isfinite(freq)]
            live = freq[freq > 0]
            if live.size:
                lowest.append(np.log10(live.min()))
            dead = int((freq == 0).sum())
            ax.hist(np.log10(live) if live.size else [], bins=40, histtype="step",
                    label=f"{variant} ({dead} dead)")
        ax.axvline(-1, color="k", ls=":", lw=0.8)  # the dense threshold, 10 %
        ax.set_xlabel("log10 activation frequency")
        ax.set_ylabel("latents")
        ax.set_title(str(layer), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title(ds, "latent frequency"), fontsize=10)
    return save_figure(fig, path)


def _byte_text(ids: np.ndarray) -> str:
    return "".join(chr(i) if 32 <= i < 127 else ("⏎" if i == 10 else "·") for i in ids if i >= 0)


def _wordpiece_text(vocab: list[str]):
    def text(ids: np.ndarray) -> str:
        words = [vocab[i] if i < len(vocab) else f"<{i}>" for i in ids if i >= 0]
        return "".join(w[2:] if w.startswith("##") else " " + w for w in words)
    return text


def _contexts_figure(ds, path: Path, latents: int = 4, shown: int = 4) -> Path:
    """The top contexts of the ``latents`` most frequent live latents of each
    variant (first layer); the token where the latent fires is in brackets."""
    layer = ds.layer.values[0]
    variants = list(ds.variant.values)
    offsets = ds.offset.values
    centre = int(np.nonzero(offsets == 0)[0][0])
    # Each variant's block of text gets its own height: a title and one line per row.
    block = 0.45 + LINE_INCHES * latents * (shown + 1)
    fig, axes = plt.subplots(len(variants), 1, figsize=(11, 0.5 + block * len(variants)),
                             squeeze=False, layout="constrained")
    decode = _byte_text
    if ds.attrs.get("tokens") == "wordpiece":  # minilm: the shipped vocabulary
        from ..models.minilm import vocabulary

        decode = _wordpiece_text(vocabulary())
    for ax, variant in zip(axes.ravel(), variants):
        part = ds.sel(variant=variant, layer=layer)
        freq = part.frequency.values.astype(float)
        live = np.nonzero(freq > 0)[0]
        chosen = live[np.argsort(-freq[live], kind="stable")][:latents]
        lines = []
        for j in chosen:
            head = f"latent {j}  freq {freq[j]:.3f}"
            if "interp_auroc" in part:
                head += f"  AUROC {float(part.interp_auroc[j]):.2f}"
            if "token_entropy" in part:
                head += f"  entropy {abs(float(part.token_entropy[j])):.2f} bits"  # never -0.00
            lines.append(head)
            for r in range(min(shown, part.sizes["rank"])):
                ids = part.top_context.values[j, r].astype(int)
                if ids[centre] < 0:
                    continue
                text = (decode(ids[:centre]) + " [" + decode(ids[centre:centre + 1]).strip() + "]"
                        + decode(ids[centre + 1:])) if decode is not _byte_text else (
                    _byte_text(ids[:centre]) + "[" + _byte_text(ids[centre:centre + 1]) + "]"
                    + _byte_text(ids[centre + 1:]))
                lines.append(f"    {float(part.top_activation.values[j, r]):7.3f}  {text}")
        ax.text(0, 1, "\n".join(lines) or "(no live latents)", family="monospace", fontsize=7,
                va="top", transform=ax.transAxes)
        ax.set_title(f"{variant}, {layer}", fontsize=9, loc="left")
        ax.axis("off")
    fig.suptitle(title(ds, "top contexts"), fontsize=10)
    return save_figure(fig, path)


def plot_sae(ds, out_dir: Path, stem: str) -> list[Path]:
    paths = [_metrics_figure(ds, out_dir / f"{stem}_metrics.png"),
             _frequency_figure(ds, out_dir / f"{stem}_frequency.png")]
    if "top_context" in ds:
        paths.append(_contexts_figure(ds, out_dir / f"{stem}_contexts.png"))
    return paths
