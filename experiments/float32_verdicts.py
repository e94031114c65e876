"""Do float32 and float64 give the same convexity verdicts on the same curves?

A tanh mlp at bias scale 8 (xavier, seed 0) is evaluated in float32 and in float64 on the
same input-space lines (8 digits anchors, random directions of seed 0, 64 units of the
default layer, 41 points on [-1, 1]).  Prints, for each verdict, the share of curves whose
verdict differs over all curves and among the curves both precisions resolve (neither is
constant), the share of constant curves in each precision, and the float32 error in units
of eps · max |f| — flatness judged at float32 resolution in both (the default) and, for
comparison, at each dtype's own resolution — and the convex/concave verdicts without the
rounding-noise floor on the hull gap, for comparison.

    python experiments/float32_verdicts.py [--bias-scale 8] [--activation tanh] [--anchors 8]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import landscape
from landscape.convexity import DEFAULT_TOL, add_scores
from landscape.hull import lower_hull_gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bias-scale", type=float, default=8.0)
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--init", default="xavier")
    parser.add_argument("--anchors", type=int, default=8)
    ns = parser.parse_args()
    x = landscape.load_dataset("digits", n=256, in_shape=(1, 8, 8))[0]
    results = {}
    for dtype in (torch.float32, torch.float64):
        model = landscape.build_model("mlp", init=ns.init, bias_scale=ns.bias_scale, seed=0,
                                      activation=ns.activation).to(dtype)
        results[dtype] = landscape.input_slice(model, units=64, anchors=x[:ns.anchors].to(dtype),
                                               grid="-1:1:41", seed=0)
    f32 = results[torch.float32]
    for resolution in ("float32", "own dtype"):
        f64 = results[torch.float64]
        if resolution != "float32":
            f64 = add_scores(f64, "activation", resolution="float64")
        print(f"flatness at {resolution} resolution")
        c32, c64 = f32.activation_constant.values, f64.activation_constant.values
        resolved = ~c32 & ~c64
        print(f"  curves {c32.size}: constant in float32 {c32.mean():.3f}, in float64 "
              f"{c64.mean():.3f}, resolved by both {resolved.mean():.3f}")
        for verdict in ("quasi_convex", "quasi_concave", "convex", "concave"):
            a, b = f32[f"activation_{verdict}"].values, f64[f"activation_{verdict}"].values
            print(f"  {verdict:14s} differs on {(a != b).mean():.4f} of all curves, "
                  f"{(a != b)[resolved].mean():.4f} of the resolved ones "
                  f"({(a != b)[resolved].sum()} of {resolved.sum()})")
    f64 = results[torch.float64]
    a32 = f32.activation.values.reshape(-1, 41)
    a64 = f64.activation.values.reshape(-1, 41)
    magnitude = np.abs(a64).max(1)
    error = np.abs(a32 - a64).max(1) / (np.finfo(np.float32).eps * np.where(magnitude > 0, magnitude, 1))
    print("float32 error / (eps * max|f|): median {:.2f}, 99th percentile {:.2f}, max {:.2f}".format(
        *np.quantile(error, [0.5, 0.99, 1.0])))
    # Convex / concave without the noise floor: the hull gap against tol · range alone.
    live = ~(f32.activation_constant.values | f64.activation_constant.values).ravel()
    for verdict, sign in (("convex", 1.0), ("concave", -1.0)):
        a, b = (lower_hull_gap(sign * v) <= DEFAULT_TOL * np.ptp(v, axis=1) for v in (a32, a64))
        print(f"  {verdict} without the floor differs on {(a != b)[live].sum()} of {c32.size} "
              f"curves ({(a != b)[live].sum() / c32.size:.4f}); with it "
              f"{(f32[f'activation_{verdict}'].values != f64[f'activation_{verdict}'].values).mean():.4f}")
    for name in ("activation_frac_quasi_convex", "activation_frac_either", "activation_frac_constant",
                 "activation_frac_convex", "activation_frac_concave"):
        print(f"{name}: float32 {f32.attrs[name]:.3f}, float64 {f64.attrs[name]:.3f}")


if __name__ == "__main__":
    main()
