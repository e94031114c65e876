"""Small pieces of HTML and the files beside the pages: escaped text, a page
frame, tables, unit thumbnails and the data scripts of the interactive parts."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from .assets import ASSETS


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value) -> str:
    """A number as a short string; NaN as an en dash."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if not math.isfinite(x) else f"{x:.4g}"


def page(title: str, body: str, *, root: str = "", scripts: tuple[str, ...] = (),
         data: tuple[str, ...] = ()) -> str:
    """A whole HTML document; ``root`` is the relative path to the site's top
    (where the style sheet and scripts lie), ``data`` names ``.js`` data files
    beside the page, loaded before ``scripts``."""
    tags = "".join(f'<script src="{esc(d)}"></script>' for d in data)
    tags += "".join(f'<script src="{root}{esc(s)}"></script>' for s in scripts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<link rel=\"stylesheet\" href=\"{root}report.css\"></head>\n<body>\n{body}\n{tags}\n"
            "</body></html>\n")


def table(headers: list[str], rows: list[list], *, sortable: bool = False, caption: str = "",
          table_id: str = "") -> str:
    """A table; in a sortable one every header is a button and numbers sort as
    numbers (``data-value`` keeps the full value)."""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f'<th scope="col"><button type="button">{esc(h)}</button></th>' if sortable
                   else f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, tuple):  # (html, sort value)
                cells.append(f'<td data-value="{esc(cell[1])}">{cell[0]}</td>')
            elif isinstance(cell, (int, float, np.integer, np.floating)) and not isinstance(cell, bool):
                cells.append(f'<td data-value="{esc(cell)}">{esc(fmt(cell))}</td>')
            else:
                cells.append(f"<td>{esc(fmt(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f"<table{ident}{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table>")


def figure(src: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption class=\"muted\">{esc(caption)}</figcaption>" if caption else ""
    return (f'<figure class="figure"><img src="{esc(src)}" alt="{esc(alt)}" loading="lazy">'
            f"{cap}</figure>")


def write_assets(site: Path) -> None:
    for name, text in ASSETS.items():
        (site / name).write_text(text.lstrip(), encoding="utf-8")


def write_data(path: Path, variable: str, value) -> None:
    """A ``.js`` file assigning ``value`` (JSON) to ``window.<variable>``."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    path.write_text(f"window.{variable} = {text};\n", encoding="utf-8")


def _scaled(a: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) or (H, W, 3) in [0, 1], scaled per image."""
    a = np.nan_to_num(np.asarray(a, dtype=float))
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.moveaxis(a, 0, -1)
    return a.mean(axis=0) if a.ndim == 3 else a


def image_strip(images, path: Path, height: int = 56) -> tuple[int, int]:
    """Write images (each (C, H, W)) side by side, one pixel gap, enlarged by an
    integer factor (pixel repetition) to about ``height`` pixels, as one PNG;
    returns its (width, height)."""
    import matplotlib.image

    tiles = [_scaled(a) for a in images]
    tiles = [np.repeat(t[..., None], 3, axis=-1) if t.ndim == 2 else t for t in tiles]
    h = max(t.shape[0] for t in tiles)
    scale = max(1, height // h)
    gap = np.ones((h, 1, 3))
    parts = []
    for t in tiles:
        pad = np.ones((h, t.shape[1], 3))
        pad[: t.shape[0]] = t
        parts += [pad, gap]
    strip = np.concatenate(parts[:-1], axis=1)
    strip = strip.repeat(scale, axis=0).repeat(scale, axis=1)
    matplotlib.image.imsave(path, np.clip(strip, 0, 1))
    return strip.shape[1], strip.shape[0]
