"""What every experiment script shares: its command line (--quick / default / --full,
--out, --figures), where results and figures go, and how the summary is written."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args(doc: str, name: str, argv=None, full_help: str = "larger setting (GPU)"):
    """``(size, out, figures)`` from the command line: size ``quick``, ``default`` or
    ``full``; results under ``results/<name>`` and figures under ``figures/`` by default."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="toy size (tests)")
    group.add_argument("--full", action="store_true", help=full_help)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / name)
    parser.add_argument("--figures", type=Path, default=ROOT / "figures")
    ns = parser.parse_args(argv)
    size = "quick" if ns.quick else "full" if ns.full else "default"
    return size, ns.out, ns.figures


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def write_summary(out: Path, summary: dict) -> Path:
    """``summary`` as ``out/summary.json`` (numpy arrays and scalars as lists and numbers)."""
    path = Path(out) / "summary.json"
    path.write_text(json.dumps(summary, indent=1, default=_jsonable))
    return path


def stat(values) -> dict:
    """``{"mean", "std", "n"}`` of the finite ``values`` (std with ddof 1; 0 for one value;
    NaN mean and std for none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "n": int(len(v))}


def save_figure(fig, path: Path, dpi: int = 110, tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` (laid out first with ``tight``) and close it."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def timing(summary: dict, start: float, cpu_start: float) -> dict:
    """``summary`` with the run's wall and CPU seconds (since the ``time.time()`` /
    ``time.process_time()`` readings ``start`` / ``cpu_start``) and peak memory."""
    import resource
    import time

    summary["seconds"] = time.time() - start
    summary["cpu_seconds"] = time.process_time() - cpu_start
    summary["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return summary
