"""Running a sweep's tasks on Dask: one file per task, written once.

Each task writes its own netCDF file atomically; a task whose file exists, loads
and was made with the same options is skipped, before it is submitted and again
on the worker that runs it.  A task Dask runs a second time (its worker died
after the task finished but before its answer reached the client) therefore
finds its file and writes nothing, and running the sweep again after a crash or
a kill loses nothing finished.  A failing task is recorded with its error and
does not stop the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import LandscapeError
from ..memory import use_threads
from ..results import load
from .cluster import WorkerPlan, _close, local_plan, start_client
from .plan import Task


def _is_done(task: Task) -> bool:
    """The task's file exists, loads, and was made by the same task."""
    path = Path(task.path)
    if not path.is_file():
        return False
    try:
        ds = load(path)
    except LandscapeError:
        return False
    return ds.attrs.get("sweep_task") == task.identity()


def _concurrent_tasks() -> int:
    """Tasks the Dask worker running this one runs at once (1 outside a worker)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def run_task(task: Task | dict, skip_done: bool = False) -> dict:
    """Run one task in this process (a Dask worker); never raises for a task's own
    failure: returns ``{"label", "path", "error", "written"}`` with ``error`` None on
    success.  ``skip_done``: write nothing when the task's file is already there
    (:func:`_is_done`), as it is when Dask runs a task again whose first run
    finished on a worker that died before the client heard of it."""
    if isinstance(task, dict):
        task = Task(**task)
    try:
        if skip_done and _is_done(task):
            return {"label": task.label, "path": task.path, "error": None, "written": False}
        import torch

        from ..commands.registry import ANALYSES

        use_threads(task.threads, _concurrent_tasks())
        Path(task.path).parent.mkdir(parents=True, exist_ok=True)
        entry = ANALYSES[task.analysis]
        ds, setup = entry.run(dict(task.opts))
        ds.attrs["sweep_task"] = task.identity()
        ds.attrs["threads"] = torch.get_num_threads()
        entry.save(ds, setup)
        return {"label": task.label, "path": task.path, "error": None, "written": True}
    except Exception as exc:  # recorded, never fatal to the sweep
        message = " ".join(str(exc).split())
        if not isinstance(exc, LandscapeError):
            message = f"{type(exc).__name__}: {message}"
        return {"label": task.label, "path": task.path, "error": message, "written": False}


@dataclass
class SweepOutcome:
    """What a sweep did: tasks run or skipped, and errors by task label."""

    tasks: list[Task]
    skipped: list[str]
    ran: list[str]
    failures: dict[str, str]

    @property
    def succeeded(self) -> list[Task]:
        return [t for t in self.tasks if t.label not in self.failures]


def run_tasks(tasks: Sequence[Task], client=None, workers: int | None = None,
              scheduler: str | None = None,
              progress: Callable[[int, str], object] | None = None,
              plan: Sequence[WorkerPlan] | None = None) -> SweepOutcome:
    """Run every task whose file is not already there (see :func:`_is_done`).

    ``client``: an existing ``dask.distributed.Client``; otherwise one is started
    (``scheduler`` address, or a local cluster laid out by ``plan``, by default
    :func:`local_plan` of ``workers``) and closed at the end.  A task that raises,
    or whose worker dies more often than the scheduler allows, is recorded in
    ``failures``; the others go on.  Each answer is dropped as soon as it arrives, so
    that a worker dying later does not make Dask run a finished task again; a task
    it runs again all the same finds its file and writes nothing.
    """
    labels = [t.label for t in tasks]
    if len(set(labels)) != len(labels):
        raise LandscapeError("sweep: two tasks would write the same file")
    todo = [t for t in tasks if not _is_done(t)]
    skipped = [t.label for t in tasks if t not in todo]
    failures: dict[str, str] = {}
    if todo:
        from dask.distributed import as_completed

        own = client is None
        if own:
            if plan is None and not scheduler:
                plan = local_plan(todo, workers)
            client = start_client(workers, scheduler, plan)
        bar = progress(len(todo), f"sweep ({len(skipped)} done before)") if progress else None
        try:
            futures = {}
            for t in todo:
                future = client.submit(run_task, asdict(t), True, pure=False,
                                       key=f"landscape-{t.label}-{os.urandom(4).hex()}")
                futures[future] = t
            for future in as_completed(list(futures)):
                t = futures.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # KilledWorker and the like
                    result = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
                if result["error"] is not None:
                    failures[t.label] = result["error"]
                future.release()  # the scheduler forgets it: nothing to recompute if a worker dies
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if own:
                _close(client)
    return SweepOutcome(list(tasks), skipped, [t.label for t in todo], failures)

