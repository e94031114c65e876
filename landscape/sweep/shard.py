"""One slice's grid points sharded over Dask workers, the way Li et al.
(*Visualizing the Loss Landscape of Neural Nets*, NeurIPS 2018) split a surface's
coordinate list over MPI ranks and gather the values.

The client draws the directions, sizes the chunks of points and builds the
grid's evaluator (:class:`landscape.grids.LossGrid` or ``InputGrid``); this
module ships that evaluator to the workers once, as bytes, and each task
evaluates a run of consecutive chunks with ``evaluator.evaluate(start, stop)``:
the very chunks, in the very arithmetic, of a single-process run, so the
gathered surface is identical to it.  Answers come back to the client in memory
(no file is written anywhere).  A worker that dies mid-surface loses only the
tasks it held: the scheduler runs them again on another worker (the evaluator's
bytes are a task of their own, recomputed from the scheduler's copy when every
worker holding them is gone), and a task that raises is retried ``RETRIES`` times.

``scheduler``: ``"local:N"`` starts a local cluster of N worker processes for
this slice and closes it after; any other string is the address of a running
scheduler (``tcp://host:8786``: a ``dask-jobqueue`` cluster's, a remote one's),
reached and left running; a ``distributed.Client`` is used as it is.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import threading
import warnings
from collections import OrderedDict

from ..errors import LandscapeError

# Attempts beyond the first for a task that raises (a worker that dies is the
# scheduler's business: it reruns that worker's tasks elsewhere).
RETRIES = 2
# Tasks per worker thread: enough to balance the load and to lose little when a
# worker dies, few enough that each task's overhead stays small.
TASKS_PER_THREAD = 4
# Evaluators a worker keeps unpickled (the surfaces it is working on).
KEPT = 2

_grids: OrderedDict[str, object] = OrderedDict()
_lock = threading.Lock()


def parse_scheduler(spec) -> tuple[str, int | str]:
    """``"local:N"`` -> ``("local", N)``; an address -> ``("address", spec)``; a
    LandscapeError naming the option otherwise."""
    if not isinstance(spec, str) or not spec.strip():
        raise LandscapeError(f"scheduler: expected local:N or a scheduler address, got {spec!r}")
    spec = spec.strip()
    if spec.startswith("local"):
        match = re.fullmatch(r"local:(\d+)", spec)
        if not match or int(match.group(1)) < 1:
            raise LandscapeError(f"scheduler: expected local:N with N >= 1 worker processes, "
                                 f"got {spec!r}")
        return "local", int(match.group(1))
    return "address", spec


def _client(scheduler):
    """(client, whether this module started it and must close it)."""
    if hasattr(scheduler, "submit"):
        return scheduler, False
    from .cluster import start_client

    kind, value = parse_scheduler(scheduler)
    if kind == "local":
        return start_client(workers=value), True
    return start_client(scheduler=value), True


def _user_modules(grid) -> None:
    """Ship the modules of models loaded from a file (``PATH.py:FUNCTION``) by
    value: workers cannot import them by name."""
    import cloudpickle

    for obj in vars(grid).values():
        modules = getattr(obj, "modules", None)
        if not callable(modules):
            continue
        for m in modules():
            name = type(m).__module__
            if name.startswith("landscape_user_model_") and name in sys.modules:
                cloudpickle.register_pickle_by_value(sys.modules[name])


def _evaluator_bytes(blob: bytes) -> bytes:
    return blob


def _evaluate(token: str, blob: bytes, ranges: list[tuple[int, int]]) -> list:
    """On a worker: the evaluator of ``token`` (unpickled once per worker) over ``ranges``."""
    with _lock:
        grid = _grids.get(token)
        if grid is None:
            grid = pickle.loads(blob)
            _grids[token] = grid
            while len(_grids) > KEPT:
                _grids.popitem(last=False)
        _grids.move_to_end(token)
    return [grid.evaluate(start, stop) for start, stop in ranges]


def task_ranges(ranges: list[tuple[int, int]], tasks: int) -> list[list[tuple[int, int]]]:
    """``ranges`` (the chunks, in order) cut into at most ``tasks`` runs of consecutive
    chunks of nearly equal length; the chunks themselves are kept as they are."""
    tasks = max(1, min(tasks, len(ranges)))
    bounds = [round(i * len(ranges) / tasks) for i in range(tasks + 1)]
    return [ranges[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def evaluate_sharded(grid, ranges: list[tuple[int, int]], scheduler, bar) -> list:
    """``[grid.evaluate(start, stop) for start, stop in ranges]``, computed on the
    workers of ``scheduler`` (module docstring); ``bar.update`` as answers arrive."""
    import cloudpickle

    client, own = _client(scheduler)
    try:
        _user_modules(grid)
        blob = cloudpickle.dumps(grid, protocol=pickle.HIGHEST_PROTOCOL)
        threads = sum(client.nthreads().values()) or 1
        token = os.urandom(8).hex()
        with warnings.catch_warnings():  # the evaluator's bytes are meant to travel
            warnings.simplefilter("ignore")
            state = client.submit(_evaluator_bytes, blob, key=f"landscape-grid-{token}", pure=False)
        del blob
        runs = task_ranges(ranges, TASKS_PER_THREAD * threads)
        futures = {client.submit(_evaluate, token, state, run, pure=False, retries=RETRIES,
                                 key=f"landscape-chunks-{token}-{i}"): i
                   for i, run in enumerate(runs)}
        from dask.distributed import as_completed

        answers: list = [None] * len(runs)
        for future in as_completed(list(futures)):
            i = futures.pop(future)
            try:
                answers[i] = future.result()
            except LandscapeError:
                raise
            except Exception as exc:  # KilledWorker after too many deaths, and the like
                raise LandscapeError(f"scheduler: grid points {runs[i][0][0]}-{runs[i][-1][1] - 1} "
                                     f"failed on the workers ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())})") from None
            future.release()
            bar.update(sum(stop - start for start, stop in runs[i]))
        state.release()
        return [part for run in answers for part in run]
    finally:
        if own:
            from .cluster import _close

            _close(client)


class connected:
    """``with connected(scheduler) as client``: ``None`` for no scheduler, else a
    client, closing a local cluster this started (``local:N``) on the way out, so
    that the parts of one slice share one cluster."""

    def __init__(self, scheduler):
        if scheduler is not None and not hasattr(scheduler, "submit"):
            parse_scheduler(scheduler)  # a malformed value fails before any work
        self.scheduler, self.client, self.own = scheduler, None, False

    def __enter__(self):
        if self.scheduler is None:
            return None
        self.client, self.own = _client(self.scheduler)
        return self.client

    def __exit__(self, *_exc) -> None:
        if self.own:
            from .cluster import _close

            _close(self.client)
