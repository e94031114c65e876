"""Benchmark: small workloads on a quiet CPU and with another process keeping one
core busy, under several thread settings, to show what a thread pool that spins
while it waits costs on a shared machine.

Each measurement runs in a fresh subprocess, since the OpenMP runtime reads its
wait policy (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``) once, when torch loads.
Settings (``--settings``):

- ``default``: what the ``landscape`` command line sets (``landscape.memory.thread_defaults``);
- ``torch``: nothing set (torch's own pool of one thread per core, libgomp's spinning wait);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` with torch's own thread count;
- ``one``: ``OMP_NUM_THREADS=1``.

Workloads (``--workloads``): ``grad`` (50 gradients of the xavier ``cnn`` on 64
digits), ``hessian`` (its top-5 Hessian eigenvalues on 128 digits), ``slice``
(a 2-D 5x5 loss slice of the ``cnn`` on 128 digits plus a 1-D input slice of
16 units at 8 anchors), ``sae`` (8 training steps of a TopK SAE, 1024 vectors a
step, width 128, 16x expansion, k 32).

The busy process is a Python spin loop pinned with ``taskset`` to the last core
this process may use; it is started before each busy block, has its own deadline,
and is killed at the block's end.  Quiet and busy blocks and the settings inside
them are interleaved over ``--repeats`` rounds; the table gives medians of the
in-process wall time and of the CPU time (user + system, every thread), and the
1-minute load average beside each condition.

    python bench/threads_bench.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {"default": {}, "torch": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "one": {"OMP_NUM_THREADS": "1"}}
WAIT_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SPIN = "import time, sys\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"


def _workload(name: str):
    """A zero-argument callable for ``name``, set up outside the timed part."""
    import torch

    import landscape
    from landscape.losses import Objective

    if name in ("grad", "hessian", "slice"):
        model = landscape.build_model("cnn", init="xavier", seed=0)
        n = {"grad": 64, "hessian": 128, "slice": 128}[name]
        x, y = landscape.load_dataset("digits", n=n, in_shape=model.in_shape)
    if name == "grad":
        def run():
            for _ in range(50):
                model.zero_grad(set_to_none=True)
                Objective(model)(model(x), x, y).backward()
        return run
    if name == "hessian":
        return lambda: landscape.hessian_spectrum(model, x, y, top_k=5)
    if name == "slice":
        def run():
            landscape.loss_slice(model, x, y, dims=2, grid="-1:1:5")
            landscape.input_slice(model, None, 16, x[:8], data=x)
        return run
    if name == "sae":
        acts = torch.randn(8192, 128, generator=torch.Generator().manual_seed(0))
        return lambda: landscape.train_sae(acts, expansion=16, k=32, batch_size=1024, epochs=1)
    raise SystemExit(f"unknown workload {name!r}")


def worker(name: str, setting: str) -> None:
    """Time one workload in this process and print a JSON line."""
    if setting == "default":
        from landscape.memory import thread_defaults

        thread_defaults()
    import torch

    run = _workload(name)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                      "threads": torch.get_num_threads()}))


def _measure(name: str, setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    env.update(SETTINGS[setting])
    out = subprocess.run([sys.executable, __file__, "--worker", name, setting], env=env,
                         capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["load"] = os.getloadavg()[0]
    return row


def _table(rows: dict, workloads: list[str], settings: list[str], rounds: int) -> None:
    """The medians so far, as a Markdown table (printed after every round)."""
    print(f"\nmedians over {rounds} round(s)")
    print("| workload | setting | threads | quiet wall (s) | busy wall (s) | busy / quiet | "
          "quiet CPU (s) | busy CPU (s) | load quiet / busy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for name in workloads:
        for setting in settings:
            if (name, setting, False) not in rows or (name, setting, True) not in rows:
                continue
            q, b = ({k: statistics.median(v[k] for v in rows[(name, setting, busy)])
                     for k in ("wall", "cpu", "load")} for busy in (False, True))
            threads = rows[(name, setting, False)][0]["threads"]
            print(f"| {name} | {setting} | {threads} | {q['wall']:.2f} | {b['wall']:.2f} | "
                  f"{b['wall'] / q['wall']:.1f}x | {q['cpu']:.2f} | {b['cpu']:.2f} | "
                  f"{q['load']:.1f} / {b['load']:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="grad,hessian,slice,sae")
    parser.add_argument("--settings", default="default,torch,one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy-limit", type=float, default=3600,
                        help="seconds after which the busy process stops by itself")
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    workloads, settings = args.workloads.split(","), args.settings.split(",")
    core = max(os.sched_getaffinity(0))
    rows: dict[tuple, list[dict]] = {}
    print(f"cores {sorted(os.sched_getaffinity(0))}, busy core {core}, python {sys.version.split()[0]}",
          flush=True)
    for r in range(args.repeats):
        for busy in ((False, True) if r % 2 == 0 else (True, False)):
            spinner = None
            if busy:
                spinner = subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", SPIN,
                                            str(args.busy_limit)])
                time.sleep(0.5)
            try:
                for setting in settings if r % 2 == 0 else settings[::-1]:
                    for name in workloads:
                        row = _measure(name, setting)
                        rows.setdefault((name, setting, busy), []).append(row)
                        print(f"round {r} {'busy ' if busy else 'quiet'} {setting:8s} {name:8s} "
                              f"wall {row['wall']:7.2f} s cpu {row['cpu']:7.2f} s threads "
                              f"{row['threads']} load {row['load']:.1f}", flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
        _table(rows, workloads, settings, r + 1)

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
