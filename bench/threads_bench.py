"""Benchmark: one gradient of a small ``cnn`` with 1, 2, ... torch threads, to show
what a thread pool larger than the cores a process gets costs on a busy machine.

Prints the median and the worst of ``--repeats`` gradients per thread count,
the cores this process may use (its affinity mask) and the load average, since
the figure depends on what else runs.

    python bench/threads_bench.py --threads 1,2,4 --batch 64
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import landscape
from landscape.memory import usable_cores
from landscape.models import per_sample_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to time")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    model = landscape.build_model("cnn", init="xavier", seed=0)
    x, y = landscape.load_dataset("digits", n=args.batch, in_shape=model.in_shape)
    print(f"torch {torch.__version__}, usable cores {usable_cores()}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, cnn, batch {args.batch}")
    print("| threads | median gradient (ms) | worst (ms) |")
    print("|---:|---:|---:|")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        times = []
        for _ in range(args.repeats + 3):
            start = time.perf_counter()
            model.zero_grad(set_to_none=True)
            per_sample_loss(model, model(x), x, y).mean().backward()
            times.append(time.perf_counter() - start)
        times = np.asarray(times[3:]) * 1e3
        print(f"| {threads} | {np.median(times):.2f} | {times.max():.1f} |")


if __name__ == "__main__":
    main()
