"""`bench/gpu.sh --smoke`: every row of the GPU table runs on the CPU at toy size,
and the slice engines agree with the per-point reference loop."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_smoke_prints_one_table_with_every_row():
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--smoke", "--threads", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert "threads 1" in lines[0] and "[smoke]" in lines[0]
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| what | method | time (s) | rate | peak GPU memory | check |"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    methods = [r[1] for r in rows]
    assert methods[:4] == ["per-point loop (reference)", "loss_slice loop", "loss_slice vmap",
                           "loss_slice auto (chose vmap)"]
    for row in rows[1:4]:  # each engine's surface against the reference loop's
        assert float(re.search(r"max abs diff (\S+)", row[5]).group(1)) < 1e-5
    hessian = [r for r in rows if r[0].startswith("Hessian top-2")]
    assert [r[1] for r in hessian] == ["Lanczos (ours, tol 1e-3)", "PyHessian (tol 1e-3)"]
    assert float(re.search(r"rel. diff (\S+)", hessian[0][5]).group(1)) < 5e-2
    assert any(r[0] == "HVP / gradient" and "x a gradient" in r[3] for r in rows)
    sae = [r for r in rows if r[0] == "SAE training"]
    assert len(sae) == 1
    try:
        import landscape

        landscape.train_sae  # noqa: B018
        assert sae[0][3].endswith("tokens/s")
    except AttributeError:
        assert sae[0][1] == "n/a (landscape.train_sae missing)"
    assert all(r[4] == "n/a (cpu)" for r in rows if r[0] != "SAE training" or r[2])
