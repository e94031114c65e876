#!/usr/bin/env bash
# The GPU figures in one table (bench/gpu_table.py): slice engines vs the
# per-point loop (resnet18, 21x21, 512 samples), Hessian top-5 vs PyHessian at
# batch 512, HVP/gradient ratio, SAE training tokens/s, and the peak GPU memory
# of each. Runs within 8 minutes on one CUDA device.
#
#   bash bench/gpu.sh            # on a CUDA machine; record the table in bench/RESULTS.md
#   bash bench/gpu.sh --smoke    # the same code paths on the CPU at toy size (seconds)
#
# PYTHON selects the interpreter (default: python3); other options go to gpu_table.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if [ "${1:-}" = "--smoke" ]; then
    shift
    exec "$python" "$here/gpu_table.py" --smoke "$@"
fi
if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA device here; 'bash bench/gpu.sh --smoke' runs the same code on the CPU" >&2
    exit 1
fi
exec timeout 480 "$python" "$here/gpu_table.py" "$@"
