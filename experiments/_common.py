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
    size, out, figures, _ = parse_args_with(doc, name, argv, full_help=full_help)
    return size, out, figures


def parse_args_with(doc: str, name: str, argv=None, options=None,
                    full_help: str = "larger setting (GPU)"):
    """:func:`parse_args` with a script's own options: ``options(parser)`` adds them;
    returns ``(size, out, figures, namespace)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="toy size (tests)")
    group.add_argument("--full", action="store_true", help=full_help)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / name)
    parser.add_argument("--figures", type=Path, default=ROOT / "figures")
    if options is not None:
        options(parser)
    ns = parser.parse_args(argv)
    size = "quick" if ns.quick else "full" if ns.full else "default"
    return size, ns.out, ns.figures, ns


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


def lanczos_extremes(model, x, y, top_k: int = 1, bottom_k: int = 1, tol: float = 1e-3,
                     max_steps: int = 60, min_steps: int | None = None, block: int | None = None,
                     bn: str = "eval", seed: int = 0) -> dict:
    """The ``top_k`` largest and ``bottom_k`` smallest eigenvalues of the loss Hessian on
    ``(x, y)`` (:class:`landscape.hessian.LossHessian`, BatchNorm statistics ``bn``) by
    Lanczos with relative tolerance ``tol``, each with its explicit residual and
    ``converged`` flag; ``|λmin/λmax|``; the products used; and the bottom Ritz value of
    the Krylov space of half the steps (how far λmin still moved).

    ``min_steps`` forces that many products before convergence is accepted: a Hessian with
    a large null space has near-zero Ritz values with tiny residuals, so a short run can
    call a null direction "converged" at the bottom before any negative eigenvalue has
    entered the Krylov space."""
    from landscape.hessian import LossHessian, lanczos

    op = LossHessian(model, x, y, bn=bn)
    try:
        res = lanczos(op, top_k=top_k, bottom_k=bottom_k, tol=tol, max_steps=max_steps,
                      min_steps=min_steps, seed=seed, eigenvectors=False, block_size=block)
    finally:
        op.release()
    top = np.array(res.which) == "top"
    vals, resid, conv = res.eigenvalues, res.residuals, res.converged
    half = res.steps // 2 // res.block_size * res.block_size
    lmax, lmin = float(vals.max()), float(vals.min())
    return {"top": [float(v) for v in vals[top]], "lambda_max": lmax, "lambda_min": lmin,
            "ratio_min_max": abs(lmin / lmax) if lmax else float("nan"),
            "converged_top": bool(conv[top][0]), "converged_min": bool(conv[~top][-1]),
            "residual_top": float(resid[top][0]), "residual_min": float(resid[~top][-1]),
            "lambda_min_half": float(np.linalg.eigvalsh(res.T[:half, :half])[0]) if half
            else float("nan"),
            "lanczos_hvp": int(op.n_products), "lanczos_steps": int(res.steps), "tol": tol,
            "bn": op.bn_mode, "n_params": int(op.dim)}


# ----------------------------------------------------------------------------- equivalence

def tost(a, b, margin: float, paired: bool = False, alpha: float = 0.05) -> dict:
    """Is the mean of ``b`` equal to the mean of ``a`` within ``±margin``?  Two one-sided
    t-tests (Schuirmann 1987), on ``b − a`` paired by index or as Welch's two samples.

    With ``d`` the difference of the means, ``s`` its standard error and ``ν`` its degrees
    of freedom (``n − 1`` paired; Welch–Satterthwaite otherwise), the two null hypotheses
    ``δ ≤ −M`` and ``δ ≥ M`` are rejected by ``t₁ = (d + M)/s`` and ``t₂ = (d − M)/s``:
    ``p_equivalence = max(P(T_ν ≥ t₁), P(T_ν ≤ t₂))``; equivalence at level α is the
    ``1 − 2α`` interval ``d ± t_{1−α,ν} s`` inside ``(−M, M)``.  Beside it the ordinary
    two-sided test of ``δ = 0`` (``p_difference``) and its power against a true
    difference of ``±M`` at level α (noncentral t, ``ncp = M/s``, the observed ``s``).

    ``verdict``: ``equivalent`` (p_equivalence < α), else ``different`` (p_difference <
    α), else ``not detected`` — neither shown, with the power saying how likely a
    difference of the margin would have been seen.  Non-finite values are dropped (pairs
    whole); fewer than 2 values a side give ``untested``."""
    from scipy import stats

    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if margin <= 0 or not np.isfinite(margin):
        raise ValueError(f"margin: must be a positive number, got {margin}")
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired: a and b need the same length, got {len(a)} and {len(b)}")
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
    else:
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    out = {"margin": float(margin), "alpha": alpha, "paired": bool(paired), "n_a": int(len(a)),
           "n_b": int(len(b))}
    nan = float("nan")
    if len(a) < 2 or len(b) < 2:
        return out | {"diff": nan, "se": nan, "df": nan, "ci": [nan, nan], "p_equivalence": nan,
                      "p_difference": nan, "power": nan, "verdict": "untested"}
    if paired:
        d = b - a
        diff, se, df = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1.0
    else:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        diff, se = float(b.mean() - a.mean()), float(np.sqrt(va + vb))
        df = float((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))) \
            if va + vb > 0 else float(len(a) + len(b) - 2)
    if se == 0:  # no spread at all: the difference is known exactly
        inside = abs(diff) < margin
        p_eq, p_diff, power, half = (0.0 if inside else 1.0), (1.0 if diff == 0 else 0.0), 1.0, 0.0
    else:
        p_eq = float(max(stats.t.sf((diff + margin) / se, df), stats.t.cdf((diff - margin) / se, df)))
        p_diff = float(2 * stats.t.sf(abs(diff) / se, df))
        crit = stats.t.ppf(1 - alpha / 2, df)
        ncp = margin / se
        power = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
        half = float(stats.t.ppf(1 - alpha, df) * se)
    verdict = ("equivalent" if p_eq < alpha else "different" if p_diff < alpha
               else "not detected")
    return out | {"diff": diff, "se": se, "df": float(df), "ci": [diff - half, diff + half],
                  "p_equivalence": p_eq, "p_difference": p_diff, "power": power,
                  "verdict": verdict}


def equivalence_text(result: dict, unit: str = "") -> str:
    """One phrase for a :func:`tost` result: "equivalent within ±M (TOST p=…)",
    "different (p=…)" or "not detected (power … at ±M)"."""
    m = f"±{result['margin']:g}{unit}"
    diff = f"Δ {result['diff']:+.3g}"
    if result["verdict"] == "equivalent":
        return f"equivalent within {m} ({diff}, TOST p={result['p_equivalence']:.2g})"
    if result["verdict"] == "different":
        return f"different ({diff}, p={result['p_difference']:.2g})"
    if result["verdict"] == "not detected":
        return (f"not detected ({diff}, p={result['p_difference']:.2g}; power "
                f"{result['power']:.2f} at {m}; TOST p={result['p_equivalence']:.2g})")
    return "untested (fewer than 2 values a side)"
