"""The body of one result's page, by kind: slice, hessian, maxact, tsne, sae,
sweep and blind.  Each function returns HTML and writes its images into the
result's folder; side-by-side peers come from :mod:`landscape.report.site`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .html import esc, fmt, image_strip, table

MAXACT_METRICS = ("rho", "gain", "displacement", "n_maxima", "p_hit", "dist_to_data",
                  "topk_compactness", "topk_jaccard", "lipschitz", "morans_i")
SAE_METRICS = ("frequency", "label_entropy", "token_entropy", "interp_auroc", "rho", "p_hit")


def describe(ds) -> str:
    """``model, init …, bias …, seed …, state`` of a result, for labels."""
    a = ds.attrs
    return (f"{a.get('model', '?')} · {a.get('init', '?')} · bias {a.get('bias_scale', '?')} · "
            f"seed {a.get('seed', '?')} · {a.get('state', '?')}")


# ----------------------------------------------------------------------------- slice

def slice_body(ds, folder: Path) -> str:
    parts = []
    for space in ("loss", "activation"):
        fracs = {k[len(space) + 6:]: v for k, v in ds.attrs.items()
                 if k.startswith(f"{space}_frac_")}
        if fracs:
            parts.append(f"<h2>{space} curves: verdict fractions</h2>")
            parts.append(table(["verdict", "fraction of curves"],
                               [[k.replace("_", " "), float(v)] for k, v in fracs.items()]))
    if "activation" in ds.data_vars and "unit" in ds.dims:
        rows, flat = [], []
        for unit in ds.unit.values:
            for anchor in ds.anchor.values:
                u = ds.sel(unit=unit, anchor=anchor)
                verdict = [name for name in ("quasi_convex", "quasi_concave", "convex", "concave")
                           if bool(u[f"activation_{name}"])]
                row = [int(unit), int(anchor), ", ".join(verdict) or "neither",
                       float(u.activation_qcvx_barrier), float(u.activation_qccv_barrier),
                       int(u.activation_n_maxima)]
                (flat if bool(u.activation_constant) else rows).append(row)
        heads = ["unit", "anchor", "verdict", "quasi-convexity barrier", "quasi-concavity barrier",
                 "maxima"]
        parts.append("<h2>Unit curves and their verdicts</h2>")
        parts.append(table(heads, rows, sortable=True))
        parts.append(f"<h2>Flat curves ({len(flat)})</h2>")
        parts.append(table(heads, flat) if flat else "<p class=\"muted\">none</p>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- hessian

def hessian_body(ds, folder: Path) -> str:
    parts = []
    if "eig" in ds.dims and ds.eigenvalue.ndim == 1:
        rows = [[str(ds.which.values[i]) if "which" in ds.coords else "", float(ds.eigenvalue[i]),
                 float(ds.residual[i]) if "residual" in ds else float("nan"),
                 bool(ds.converged[i]) if "converged" in ds else "?"] for i in range(ds.sizes["eig"])]
        parts.append("<h2>Eigenvalues</h2>")
        parts.append(table(["end", "eigenvalue", "residual", "converged"], rows))
    masses = [(n, float(ds[n])) for n in ("negative_mass", "zero_mass", "positive_mass") if n in ds]
    if masses:
        parts.append("<h2>Density masses</h2>")
        parts.append(table(["mass", "value"], [[n.replace("_", " "), v] for n, v in masses]))
    if "trace" in ds:
        se = float(ds.trace_stderr) if "trace_stderr" in ds else float("nan")
        parts.append(f"<p>trace = {esc(fmt(float(ds.trace)))} ± {esc(fmt(se))} (standard error)</p>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- maxact

def maxact_images(ds, folder: Path) -> dict[int, dict]:
    """One strip of the top-k examples and one image of the best maximum per
    unit; {unit: {"examples": file, "maximum": file, "size": (w, h)}}."""
    out = {}
    if "topk_image" not in ds:
        return out
    for unit in ds.unit.values:
        u = ds.sel(unit=unit)
        ex = f"unit{int(unit)}_examples.png"
        size = image_strip(list(u.topk_image.values), folder / ex)
        entry = {"examples": ex, "size": size}
        if "maximum" in ds:
            mx = f"unit{int(unit)}_maximum.png"
            image_strip([u.maximum.values], folder / mx)
            entry["maximum"] = mx
        out[int(unit)] = entry
    return out


def maxact_metrics_table(u) -> str:
    rows = []
    for name in MAXACT_METRICS:
        if name in u:
            z = float(u[f"{name}_z"]) if f"{name}_z" in u else float("nan")
            rows.append([name, float(u[name]), z])
    return table(["metric", "value", "null z"], rows)


def maxact_card(ds, unit: int, images: dict, peers: str) -> str:
    u = ds.sel(unit=unit)
    layer = ds.attrs.get("layer", "")
    img = images.get(unit)
    pics = ""
    if img:
        w, h = img["size"]
        acts = ", ".join(fmt(float(v)) for v in u.topk_activation.values)
        pics = (f'<img src="{esc(img["examples"])}" width="{w}" height="{h}" loading="lazy" '
                f'alt="top {ds.sizes["rank"]} dataset examples of unit {unit}, activations {acts}">')
        if "maximum" in img:
            pics += (f' <img class="max" src="{esc(img["maximum"])}" loading="lazy" height="{h}" '
                     f'alt="optimised maximum of unit {unit}, activation '
                     f'{fmt(float(u.best_activation))}">')
    return (f'<article class="card" id="unit-{unit}"><h3>{esc(layer)} unit {unit}</h3>{pics}'
            f'<p class="muted">top examples (left), best optimised maximum (right)</p>'
            f"{maxact_metrics_table(u)}{peers}</article>")


# ----------------------------------------------------------------------------- tsne

def tsne_body(ds, folder: Path, stem: str) -> tuple[str, dict]:
    """The map coloured by label and a heatmap per unit with a unit selector."""
    from ..plot.common import plt

    x, y = ds.tsne_x.values, ds.tsne_y.values
    fig, ax = plt.subplots(figsize=(4.6, 4.2), layout="constrained")
    points = ax.scatter(x, y, c=np.zeros_like(x), s=9, cmap="magma")
    bar = fig.colorbar(points, ax=ax, label="activation")
    ax.set_xticks([])
    ax.set_yticks([])
    units = []
    for unit in ds.unit.values:
        act = ds.activation.sel(unit=unit).values
        points.set_array(act)
        lo, hi = float(np.nanmin(act)), float(np.nanmax(act))
        points.set_clim(lo, hi if hi > lo else lo + 1)
        bar.update_normal(points)
        ax.set_title(f"unit {int(unit)}")
        name = f"{stem}_unit{int(unit)}.png"
        fig.savefig(folder / name, dpi=80)
        units.append({"unit": int(unit), "image": name})
    plt.close(fig)
    options = "".join(f'<option value="{u["unit"]}">unit {u["unit"]}</option>' for u in units)
    first = units[0]
    body = ('<h2>Activation heatmaps</h2><div class="controls"><label for="unit">unit</label>'
            f'<select id="unit">{options}</select></div>'
            f'<img id="heatmap" src="{esc(first["image"])}" width="368" height="336" '
            f'alt="t-SNE map coloured by the activation of unit {first["unit"]}">')
    return body, {"units": units}


# ----------------------------------------------------------------------------- sae

def sae_order(ds, variant, layer) -> np.ndarray:
    """Latents of one SAE from the most to the least frequent."""
    freq = np.nan_to_num(ds.frequency.sel(variant=variant, layer=layer).values, nan=-1.0)
    return np.argsort(-freq, kind="stable")


def sae_summary(ds) -> str:
    names = [n for n in ("fvu", "cosine", "l0", "dead_frac", "dense_frac", "loss_recovered_mean",
                         "kl") if n in ds and ds[n].dims == ("variant", "layer")]
    rows = [[str(v), str(layer)] + [float(ds[n].sel(variant=v, layer=layer)) for n in names]
            for v in ds.variant.values for layer in ds.layer.values]
    return "<h2>Variants side by side</h2>" + table(["variant", "layer", *names], rows, sortable=True)


def sae_latent_cell(ds, variant, layer, latent: int) -> str:
    cells = []
    for name in SAE_METRICS:
        if name in ds and ds[name].dims[:3] == ("variant", "layer", "latent"):
            cells.append(f"{name} {fmt(float(ds[name].sel(variant=variant, layer=layer)[latent]))}")
    return " · ".join(cells)


def sae_card(ds, variant, layer, rank: int, latent: int, peers: str) -> str:
    top = ""
    if "top_image" in ds:
        idx = ds.top_image.sel(variant=variant, layer=layer)[latent].values
        top = f'<p class="muted">top examples: {esc(", ".join(str(int(i)) for i in idx))}</p>'
    context = ""
    if "top_context" in ds and "top_activation" in ds:
        part = ds.sel(variant=variant, layer=layer)
        context = top_contexts(part.top_context.values[latent], part.top_activation.values[latent],
                               part.offset.values)
    return (f'<article class="card"><h3>{esc(variant)} · {esc(layer)} · latent {latent} '
            f'<span class="muted">(frequency rank {rank + 1})</span></h3>'
            f"<p>{esc(sae_latent_cell(ds, variant, layer, latent))}</p>{context}{top}{peers}</article>")


def top_contexts(contexts: np.ndarray, acts: np.ndarray, offsets: np.ndarray) -> str:
    """A latent's top byte contexts (rank, offset), one line each, the token where
    it fires shaded by its activation relative to the latent's largest."""
    centre = int(np.nonzero(offsets == 0)[0][0])
    finite = acts[np.isfinite(acts)]
    hi = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    lines = []
    for ids, act in zip(contexts.astype(int), acts):
        if ids[centre] < 0:
            continue
        spans = []
        for pos, tok in enumerate(ids):
            if tok < 0:
                continue
            ch = chr(tok) if 32 <= tok < 127 else ("⏎" if tok == 10 else "·")
            if pos == centre:
                alpha = max(0.0, float(act)) / hi
                spans.append(f'<mark class="tok" style="background: rgba(230,120,0,{alpha:.2f})" '
                             f'title="activation {fmt(float(act))}">{esc(ch)}</mark>')
            else:
                spans.append(f'<span class="tok">{esc(ch)}</span>')
        lines.append(f'<div class="muted">{esc(fmt(float(act)))} {"".join(spans)}</div>')
    return "".join(lines)


# ----------------------------------------------------------------------------- sweep, blind

def sweep_body(ds, folder: Path) -> str:
    from ..errors import LandscapeError
    from ..summary import compare_table

    try:
        lines = compare_table(ds, "bias_scale")
    except LandscapeError as exc:
        lines = [str(exc)]
    return f"<h2>Headline numbers</h2><pre>{esc(chr(10).join(lines))}</pre>"


def blind_body(ds, folder: Path) -> str:
    a = ds.attrs
    rows = [["observer", a.get("observer", "?")], ["cards answered", int(ds.sizes["card"])],
            ["accuracy", float(ds.blind_accuracy)], ["AUROC", float(ds.blind_auroc)],
            ["AUROC 95 % interval", f"{fmt(float(ds.auroc_low))} – {fmt(float(ds.auroc_high))}"],
            ["binomial p (one-sided, against chance)", float(ds.p_binomial)]]
    sources = json.loads(a.get("sources", "{}"))
    rows += [[f"source {k}", v] for k, v in sources.items()]
    return "<h2>Blind test score</h2>" + table(["", "value"], rows)
