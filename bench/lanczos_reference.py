"""Top eigenvalues of a registered model's loss Hessian from the float32 model (float64
reductions), against reference values computed elsewhere (a float64 model, curvlinops'
``eigsh``, ARPACK), with the explicit residual of each returned vector.

    python bench/lanczos_reference.py --model resnet18 --batch 128 \\
        --reference 5.81902,5.60892,4.87806 --tol 1e-8
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import landscape
from landscape.hessian import LossHessian, lanczos


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--init", default="xavier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reference", required=True, help="comma-separated top eigenvalues")
    parser.add_argument("--tol", type=float, default=1e-8)
    ns = parser.parse_args(argv)
    reference = np.array([float(v) for v in ns.reference.split(",")])
    model = landscape.build_model(ns.model, init=ns.init, seed=ns.seed)
    x, y = landscape.load_dataset("digits", n=ns.batch, in_shape=model.in_shape)
    op = LossHessian(model, x, y)
    start = time.perf_counter()
    res = lanczos(op, top_k=len(reference), tol=ns.tol, eigenvectors=False, seed=123)
    seconds = time.perf_counter() - start
    error = np.abs(res.eigenvalues - reference) / np.abs(reference)
    print(f"{ns.model} ({ns.init}, seed {ns.seed}, batch {ns.batch}), tol {ns.tol:g}: "
          f"top-{len(reference)} {np.array2string(res.eigenvalues, precision=7)}")
    print(f"relative error against the reference: {np.array2string(error, precision=2)}")
    print(f"converged {res.converged.tolist()}, explicit residuals "
          f"{np.array2string(res.residuals, precision=2)}, {op.n_products} HVPs, {seconds:.1f} s")
    return {"eigenvalues": res.eigenvalues, "error": error, "converged": res.converged}


if __name__ == "__main__":
    main()
