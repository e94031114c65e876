"""bench/lanczos_reference.py against ARPACK on a float64 copy of the same model."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

import landscape
from landscape.hessian import LossHessian

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "lanczos_reference.py"


def test_reference_script_matches_arpack_on_a_float64_model():
    spec = importlib.util.spec_from_file_location("lanczos_reference", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = landscape.build_model("mlp", init="xavier", seed=0)
    x, y = landscape.load_dataset("digits", n=32, in_shape=model.in_shape)
    op = LossHessian(copy.deepcopy(model).double(), x.double(), y)
    matvec = lambda v: op.matvec(torch.as_tensor(v, dtype=torch.float64)).numpy()  # noqa: E731
    arpack = np.sort(eigsh(LinearOperator((op.dim, op.dim), matvec=matvec, dtype=np.float64),
                           k=2, which="LA", tol=1e-12)[0])[::-1]
    out = script.main(["--model", "mlp", "--batch", "32", "--tol", "1e-6",
                       "--reference", ",".join(f"{v:.12g}" for v in arpack)])
    assert np.all(out["error"] < 1e-5)
    assert out["converged"].all()
