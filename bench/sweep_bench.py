"""Sweeps on a local Dask cluster.

Default: a 12-task slice sweep (mlp; init xavier, kaiming x bias scale 0, 0.1, 1 x
seeds 0-1) on 1 worker against 2 workers, one torch thread per task; prints the
time to start each cluster (worker processes importing torch), the time of the
tasks themselves, and the ratio 1-worker / 2-worker.

``--scale N``: the scale test.  N tiny slice tasks (mlp, 3 points, 16 samples;
init xavier, kaiming x 5 bias scales x N/10 seeds) run once in this process, one
after the other, and once on a local cluster of 2 worker processes, where the
worker that writes the (N/2)-th file dies right after writing it, before its
answer reaches the scheduler.  Prints the time of each, how many files each task
wrote (must be 1), the failures (must be none) and whether the two combined
sweeps are identical.  :func:`scale_sweep` is the same scenario that
tests/test_sweep.py runs at 20 tasks.

    python bench/sweep_bench.py [--grid -1:1:21] [--samples 512]
    python bench/sweep_bench.py --scale 500
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

import xarray as xr
from distributed.diagnostics.plugin import WorkerPlugin

from landscape.sweep import combine, expand_tasks, run_task, run_tasks, start_client

# The tiny analysis of the scale test: a 3-point loss curve of a small mlp on 16 digits.
TINY = ["--space", "loss", "--dims", "1", "--grid", "-1:1:3", "--samples", "16", "--device", "cpu"]
INITS = ["xavier", "kaiming"]
BIAS_SCALES = [0.0, 0.1, 0.3, 1.0, 3.0]


class KillAfterWrite(WorkerPlugin):
    """On every worker (restarted ones too), for slice tasks writing under
    ``folder``: each file a task writes is logged (``folder/writes.log``, one line
    per write), and the worker that writes the ``after``-th file dies right after
    writing it, once (the marker ``folder/armed`` is renamed to ``fired`` first)."""

    name = "landscape-kill-after-write"

    def __init__(self, folder: str, after: int):
        self.folder, self.after = folder, after

    def setup(self, worker):
        from landscape.commands.registry import ANALYSES

        original, folder, after = ANALYSES["slice"], Path(self.folder), self.after
        log = folder / "writes.log"

        def logged(opts):
            ds, setup = original.run(opts)
            if not str(opts["out"]).startswith(str(folder)):
                return ds, setup
            finish = setup.finish

            def finish_and_log(result, **attrs):
                path = finish(result, **attrs)
                with open(log, "a") as f:  # one short appended line: atomic
                    f.write(f"{Path(path).name}\n")
                if len(log.read_text().splitlines()) >= after:
                    try:
                        os.rename(folder / "armed", folder / "fired")
                    except FileNotFoundError:
                        pass
                    else:
                        os._exit(1)
                return path

            setup.finish = finish_and_log
            return ds, setup

        ANALYSES["slice"] = dataclasses.replace(original, run=logged)


def scale_tasks(n: int, out) -> list:
    """``n`` tiny slice tasks (a multiple of 10) writing under ``out``."""
    if n % (len(INITS) * len(BIAS_SCALES)):
        raise SystemExit(f"--scale: need a multiple of {len(INITS) * len(BIAS_SCALES)} tasks")
    seeds = list(range(n // (len(INITS) * len(BIAS_SCALES))))
    return expand_tasks("slice", ["mlp"], INITS, BIAS_SCALES, seeds, out, args=TINY, threads=1)


def _plain(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs.pop("created", None)
    return ds


def scale_sweep(n: int, folder: Path, client) -> dict:
    """The scale scenario (module docstring) on ``client``'s cluster, under ``folder``."""
    folder = Path(folder)
    t0 = time.perf_counter()
    serial = scale_tasks(n, folder / "serial")
    errors = [r["error"] for r in map(run_task, serial) if r["error"]]
    if errors:
        raise SystemExit(f"serial run failed: {errors[:3]}")
    t1 = time.perf_counter()
    sharded = folder / "dask"
    sharded.mkdir(parents=True)
    client.register_plugin(KillAfterWrite(str(sharded), after=max(1, n // 2)))
    (sharded / "armed").touch()
    tasks = scale_tasks(n, sharded)
    outcome = run_tasks(tasks, client=client)
    t2 = time.perf_counter()
    writes = Counter((sharded / "writes.log").read_text().split())
    names = {Path(t.path).name for t in tasks}
    one = combine([t.path for t in serial], analysis="slice")
    many = combine([t.path for t in outcome.succeeded], analysis="slice")
    try:
        xr.testing.assert_identical(_plain(one), _plain(many))
        identical = True
    except AssertionError:
        identical = False
    return {"tasks": n, "serial_s": t1 - t0, "dask_s": t2 - t1,
            "killed": (sharded / "fired").exists(), "failures": outcome.failures,
            "files": sum(Path(t.path).is_file() for t in tasks),
            "writes": writes, "written_twice": sorted(k for k, v in writes.items() if v > 1),
            "never_written": sorted(names - set(writes)), "identical": identical}


def warm(client) -> None:
    """Import the toolkit on every worker so that the timing is of the tasks."""

    def load() -> int:
        import landscape.commands.registry  # noqa: F401

        return 1

    client.run(load)


def _close(client) -> None:
    cluster = client.cluster
    client.close()
    cluster.close()


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
            _close(client)
        if outcome.failures:
            raise SystemExit(f"failures: {outcome.failures}")
        assert len(outcome.ran) == 12
    return t1 - t0, t2 - t1


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="-1:1:21")
    parser.add_argument("--samples", default="512")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", type=int, default=None, help="Run the scale test with N tasks.")
    ns = parser.parse_args()
    if ns.scale:
        with tempfile.TemporaryDirectory() as out:
            client = start_client(2)
            try:
                warm(client)
                report = scale_sweep(ns.scale, Path(out), client)
            finally:
                _close(client)
        print(f"{report['tasks']} tasks: serial {report['serial_s']:.1f} s, 2 workers "
              f"{report['dask_s']:.1f} s (a worker killed: {report['killed']})")
        print(f"files {report['files']}, writes {sum(report['writes'].values())}, written twice "
              f"{report['written_twice']}, never written {report['never_written']}, failures "
              f"{report['failures']}")
        print(f"combined identical to the serial run: {report['identical']}")
        print(f"CPU time (this process and its workers): {cpu_seconds():.1f} s")
        return
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
