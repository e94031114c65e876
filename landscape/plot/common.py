"""Shared pieces of every figure: the title line and writing PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def title(ds, what: str = "") -> str:
    """``what — model, init, bias scale, dataset`` from a result's provenance."""
    a = ds.attrs
    bias = a.get("bias_scale", "default")
    bias = "init's own" if bias == "default" else f"{float(bias):g}"
    head = f"{what} — " if what else ""
    model, init, data = a.get("model", "?"), a.get("init", "?"), a.get("dataset", "?")
    return f"{head}{model}, init {init}, bias scale {bias}, {data}"


def save_figure(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
