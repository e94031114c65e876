"""Does the bias scale of the initialisation make units' input-response curves
(quasi-)convex?

The claim under test: with zero biases (what Xavier and Kaiming inits give) a
random network's unit activations along lines through data points are far more
often quasi-convex or quasi-concave than with biases drawn from N(0, S²).

Sweep: bias scale 0, 0.01, 0.1, 0.5, 1 x init xavier, kaiming x seeds 0-2 on
`mlp` and `cnn`, input-space slices (1-D, random directions, 16 units x 8
anchors on digits).  Writes results/bias_scale_convexity/ (the parts and the
combined sweep) and figures/bias_scale_convexity.png.

    python experiments/bias_scale_convexity.py [--workers N] [--scheduler ADDRESS]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from landscape.plot.sweeps import plot_sweep
from landscape.results import save
from landscape.summary import compare_table
from landscape.sweep import combine, expand_tasks, run_tasks

ROOT = Path(__file__).resolve().parent.parent
BIAS_SCALES = [0.0, 0.01, 0.1, 0.5, 1.0]
SLICE = ["--space", "input", "--grid", "-1:1:41", "--units", "16", "--anchors", "8", "--samples", "256",
         "--dataset", "digits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--scheduler", default=None)
    ns = parser.parse_args()
    out = ROOT / "results" / "bias_scale_convexity"
    out.mkdir(parents=True, exist_ok=True)
    tasks = expand_tasks("slice", ["mlp", "cnn"], ["xavier", "kaiming"], BIAS_SCALES, [0, 1, 2], out,
                         args=SLICE, threads=None if ns.scheduler else 1)
    outcome = run_tasks(tasks, workers=ns.workers, scheduler=ns.scheduler)
    for label, error in outcome.failures.items():
        print(f"failed: {label}: {error}")
    ds = combine([t.path for t in outcome.succeeded], failures=outcome.failures, analysis="slice")
    path = save(ds, out / "bias_scale_convexity.nc", overwrite=True)
    print("\n".join(compare_table(ds, "bias_scale")))
    figures = ROOT / "figures"
    figures.mkdir(exist_ok=True)
    (png,) = plot_sweep(ds, out, "bias_scale")
    shutil.copyfile(png, figures / "bias_scale_convexity.png")
    print(path)
    print(figures / "bias_scale_convexity.png")


if __name__ == "__main__":
    main()
