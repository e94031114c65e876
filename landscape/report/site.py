"""``build_report``: a static site of saved results (index table, one page per
result, matching units of several results side by side).

It reads results with :func:`landscape.results.load` and never runs an
analysis.  The site is written to a temporary folder beside ``out`` and moved
into place once complete, so a failure leaves no half-written report.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from ..errors import LandscapeError
from ..results import load
from .html import esc, figure, fmt, page, table, write_assets, write_data
from .kinds import (
    blind_body,
    describe,
    hessian_body,
    maxact_card,
    maxact_images,
    sae_card,
    sae_latent_cell,
    sae_order,
    sae_summary,
    slice_body,
    sweep_body,
    tsne_body,
)

REPORT_MARKERS = ("index.html", "blind.html")


def result_files(inputs) -> list[Path]:
    """The ``.nc`` files named, a folder standing for the ``.nc`` files in it."""
    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.nc"))
            if not found:
                raise LandscapeError(f"report: folder {str(p)!r} holds no .nc results")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise LandscapeError(f"report: no such file or folder {str(p)!r}")
    if not files:
        raise LandscapeError("report: no results given")
    return files


@contextlib.contextmanager
def fresh_folder(out, overwrite: bool):
    """Yield a temporary folder that becomes ``out`` when the block ends.  An
    ``out`` that exists and is not empty is an error without ``overwrite``; with
    it, only a folder holding a report (or nothing) is replaced."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise LandscapeError(f"out: {str(out)!r} is not a folder")
        entries = list(out.iterdir())
        if entries and not overwrite:
            raise LandscapeError(f"out: {str(out)!r} is not empty; choose another --out or pass "
                                 "--overwrite")
        if entries and not any((out / m).exists() for m in REPORT_MARKERS):
            raise LandscapeError(f"out: {str(out)!r} holds files that are not a report; it is "
                                 "not replaced even with --overwrite")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise LandscapeError(f"out: folder {str(parent)!r} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def headline(ds) -> str:
    a, kind = ds.attrs, ds.attrs["kind"]
    if kind == "slice":
        return " · ".join(f"{k.replace('_frac_', ' ')} {fmt(v)}" for k, v in a.items()
                          if k.endswith(("_frac_quasi_convex", "_frac_quasi_concave")))
    if kind in ("hessian", "input_hessian"):
        parts = [f"top λ {fmt(float(ds.eigenvalue.max()))}"]
        if "negative_mass" in ds:
            parts.append(f"negative mass {fmt(float(ds.negative_mass))}")
        return " · ".join(parts)
    if kind == "maxact":
        return (f"{ds.sizes['unit']} units · mean ρ {fmt(float(ds.rho.mean()))} · "
                f"mean p_hit {fmt(float(ds.p_hit.mean()))}")
    if kind == "tsne":
        return f"{ds.sizes['unit']} units · {ds.sizes['sample']} samples"
    if kind == "sae":
        return " · ".join(f"{v}: fvu {fmt(float(ds.fvu.sel(variant=v).mean()))}"
                          for v in ds.variant.values)
    if kind == "blind":
        return (f"accuracy {fmt(float(ds.blind_accuracy))} · AUROC {fmt(float(ds.blind_auroc))} · "
                f"p {fmt(float(ds.p_binomial))}")
    if kind == "sweep":
        return f"sweep of {a.get('part_kind', '?')}"
    return ""


def _figures(path: Path, ds, folder: Path) -> list[Path]:
    from ..plot import plot_file

    if ds.attrs["kind"] == "blind":
        return []
    try:
        return plot_file(path, folder)
    except LandscapeError:
        return []


def _maxact_peers(entries: list[dict], me: dict, unit: int) -> str:
    """Figures of the same layer and unit in the other maxact results."""
    out = []
    for other in entries:
        if other is me or other["kind"] != "maxact":
            continue
        ods = other["ds"]
        if ods.attrs.get("layer") != me["ds"].attrs.get("layer") or unit not in ods.unit.values:
            continue
        img = other.get("images", {}).get(unit)
        if not img:
            continue
        w, h = img["size"]
        label = describe(ods)
        out.append(f'<figure class="peer"><a href="../{other["id"]}/index.html#unit-{unit}">'
                   f'<img src="../{other["id"]}/{esc(img["examples"])}" width="{w}" height="{h}" '
                   f'loading="lazy" alt="top examples of unit {unit} in {esc(label)}"></a>'
                   f"<figcaption>{esc(label)} · ρ {fmt(float(ods.rho.sel(unit=unit)))}"
                   "</figcaption></figure>")
    return ('<div class="peers" aria-label="the same unit in other results"><p class="muted">'
            f'the same unit elsewhere:</p>{"".join(out)}</div>') if out else ""


def _sae_peers(entries: list[dict], me: dict, variant, layer, rank: int) -> str:
    """The latent of the same frequency rank in every other SAE of the same layer."""
    out = []
    for other in entries:
        if other["kind"] != "sae":
            continue
        ods = other["ds"]
        if layer not in ods.layer.values:
            continue
        for v in ods.variant.values:
            if other is me and v == variant:
                continue
            order = sae_order(ods, v, layer)
            if rank >= len(order):
                continue
            latent = int(order[rank])
            where = "this result" if other is me else describe(ods)
            out.append(f'<p class="peer">{esc(v)} ({esc(where)}) latent {latent}: '
                       f"{esc(sae_latent_cell(ods, v, layer, latent))}</p>")
    return f'<div class="peers" aria-label="the same frequency rank elsewhere">{"".join(out)}</div>' \
        if out else ""


def _result_page(entry: dict, entries: list[dict]) -> str:
    ds, folder, kind = entry["ds"], entry["folder"], entry["kind"]
    parts = [f'<nav><a href="../index.html">all results</a></nav><h1>{esc(entry["file"].name)}</h1>',
             f'<p class="muted">{esc(kind)} · {esc(describe(ds))} · layer '
             f'{esc(ds.attrs.get("layer", "–"))} · dataset {esc(ds.attrs.get("dataset", "?"))}</p>']
    scripts, data = ["table.js", "pager.js"], []
    for png in entry["figures"]:
        parts.append(figure(png.name, f"{png.stem.replace('_', ' ')} of {describe(ds)}",
                            png.stem))
    if kind == "slice":
        parts.append(slice_body(ds, folder))
    elif kind in ("hessian", "input_hessian"):
        parts.append(hessian_body(ds, folder))
    elif kind == "maxact":
        cards = [maxact_card(ds, int(u), entry["images"], _maxact_peers(entries, entry, int(u)))
                 for u in ds.unit.values]
        parts.append(f"<h2>Units ({len(cards)})</h2>")
        parts.append('<div class="cards" data-paged>' + "\n".join(cards) + "</div>")
    elif kind == "tsne":
        body, tsne = tsne_body(ds, folder, entry["id"])
        write_data(folder / "tsne_data.js", "LANDSCAPE_TSNE", tsne)
        parts.append(body)
        scripts.append("tsne.js")
        data.append("tsne_data.js")
    elif kind == "sae":
        parts.append(sae_summary(ds))
        for variant in ds.variant.values:
            for layer in ds.layer.values:
                order = sae_order(ds, variant, layer)
                cards = [sae_card(ds, variant, layer, r, int(lat),
                                    _sae_peers(entries, entry, variant, layer, r))
                         for r, lat in enumerate(order)]
                parts.append(f"<h2>{esc(variant)} · {esc(layer)}: latents by frequency</h2>")
                parts.append('<div class="cards" data-paged>' + "\n".join(cards) + "</div>")
    elif kind == "sweep":
        parts.append(sweep_body(ds, folder))
    elif kind == "blind":
        parts.append(blind_body(ds, folder))
    return page(f"{entry['file'].name} — landscape report", "\n".join(parts), root="../",
                scripts=tuple(scripts), data=tuple(data))


def _index(entries: list[dict]) -> str:
    rows = []
    for e in entries:
        a = e["ds"].attrs
        bias = a.get("bias_scale", "default")
        link = (f'<a href="{e["id"]}/index.html">{esc(e["file"].name)}</a>', e["file"].name)
        rows.append([link, e["kind"], str(a.get("model", "?")), str(a.get("init", "?")),
                     bias if isinstance(bias, str) else float(bias), int(a.get("seed", -1)),
                     str(a.get("state", "?")), str(a.get("checkpoint", "") or "–"),
                     str(a.get("layer", "–")), headline(e["ds"])])
    heads = ["result", "kind", "model", "init", "bias scale", "seed", "state", "checkpoint",
             "layer", "headline"]
    body = ("<h1>landscape report</h1>"
            f'<p class="muted">{len(entries)} results. Click a column to sort; type to filter.</p>'
            '<div class="controls"><label for="filter">filter rows</label>'
            '<input id="filter" type="search" placeholder="e.g. maxact trained"></div>'
            + table(heads, rows, sortable=True, table_id="results"))
    return page("landscape report", body, scripts=("table.js",))


def build_report(inputs, out, overwrite: bool = False) -> Path:
    """Write a static site of the results in ``inputs`` (files, or folders of
    ``.nc`` files) to the folder ``out``; returns the path of its index page."""
    files = result_files(inputs)
    entries = []
    for i, path in enumerate(files):
        ds = load(path)
        entries.append({"id": f"r{i:03d}", "file": path, "ds": ds, "kind": ds.attrs["kind"]})
    out = Path(out)
    with fresh_folder(out, overwrite) as site:
        write_assets(site)
        for e in entries:
            e["folder"] = site / e["id"]
            e["folder"].mkdir()
            e["figures"] = _figures(e["file"], e["ds"], e["folder"])
            if e["kind"] == "maxact":
                e["images"] = maxact_images(e["ds"], e["folder"])
        for e in entries:
            (e["folder"] / "index.html").write_text(_result_page(e, entries), encoding="utf-8")
        (site / "index.html").write_text(_index(entries), encoding="utf-8")
    return out / "index.html"
