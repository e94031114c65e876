"""A 12-task slice sweep (mlp; init xavier, kaiming x bias scale 0, 0.1, 1 x seeds 0-1)
on a local Dask cluster of 1 worker against 2 workers, one torch thread per task.

Prints the time to start each cluster (worker processes importing torch), the
time of the tasks themselves, and the ratio 1-worker / 2-worker.

    python bench/sweep_bench.py [--grid -1:1:21] [--samples 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from landscape.sweep import expand_tasks, run_tasks, start_client


def warm(client) -> None:
    """Import the toolkit on every worker so that the timing is of the tasks."""

    def load() -> int:
        import landscape.analyses  # noqa: F401

        return 1

    client.run(load)


def bench(workers: int, args: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        tasks = expand_tasks("slice", ["mlp"], ["xavier", "kaiming"], [0.0, 0.1, 1.0], [0, 1], out,
                             args=args, threads=1)
        t0 = time.perf_counter()
        client = start_client(workers)
        try:
            warm(client)
            t1 = time.perf_counter()
            outcome = run_tasks(tasks, client=client)
            t2 = time.perf_counter()
        finally:
            cluster = client.cluster
            client.close()
            cluster.close()
        if outcome.failures:
            raise SystemExit(f"failures: {outcome.failures}")
        assert len(outcome.ran) == 12
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="-1:1:21")
    parser.add_argument("--samples", default="512")
    parser.add_argument("--repeats", type=int, default=2)
    ns = parser.parse_args()
    args = ["--grid", ns.grid, "--samples", ns.samples, "--units", "16", "--anchors", "8"]
    results = {}
    for workers in (1, 2):
        runs = [bench(workers, args) for _ in range(ns.repeats)]
        start = min(r[0] for r in runs)
        tasks = min(r[1] for r in runs)
        results[workers] = tasks
        print(f"{workers} worker(s): cluster start {start:.2f} s, 12 tasks {tasks:.2f} s "
              f"(best of {ns.repeats}; all: {', '.join(f'{r[1]:.2f}' for r in runs)})")
    print(f"ratio 1 worker / 2 workers: {results[1] / results[2]:.2f}")


if __name__ == "__main__":
    main()
