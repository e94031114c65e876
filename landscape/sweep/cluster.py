"""Dask clusters for sweeps and sharded slices: how a local cluster shares this
machine (:func:`plan_workers`: one worker per visible GPU, pinned with
``CUDA_VISIBLE_DEVICES``, when the tasks run on CUDA, else one per core; each
worker starts with its share of the memory budget as ``LANDSCAPE_MAX_MEMORY``),
starting one (:func:`start_client`) or reaching a running scheduler by address.

This module imports no analysis: the slicing code reaches Dask through it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import LandscapeError
from ..memory import usable_cores

# No dashboard; the scheduler's small HTTP server on a free port rather than 8787.
QUIET_SCHEDULER = {"dashboard": False, "dashboard_address": ":0"}


def quiet_dask() -> None:
    """Silence distributed's log lines (worker restarts, shutdown chatter)."""
    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker",
                 "distributed.core", "distributed.utils_perf", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@dataclass
class WorkerPlan:
    """One worker process of a local cluster: the environment it starts with
    (``CUDA_VISIBLE_DEVICES`` pinning its GPU, ``OMP_NUM_THREADS``, its memory
    budget as ``LANDSCAPE_MAX_MEMORY``), its torch threads and its budget in bytes."""

    name: str
    threads: int
    budget: int
    device: str
    env: dict = field(default_factory=dict)


def plan_workers(cores: int, gpus: Sequence[str] = (), budgets: Sequence[int] = (),
                 workers: int | None = None, threads: int | None = None,
                 pin: bool = True) -> list[WorkerPlan]:
    """How a local cluster shares this machine: a pure function of what it has.

    ``cores``: CPU cores this process may run on.  ``gpus``: the GPUs tasks run on,
    by the ids ``CUDA_VISIBLE_DEVICES`` takes (empty: tasks run on the CPU).
    ``budgets``: memory in bytes to share, one per GPU (their free memory's share),
    or one for the CPU.  ``workers``: default one per GPU, else one per core; on
    GPUs worker ``i`` is pinned to ``gpus[i % len(gpus)]`` (``pin=False`` leaves every
    GPU visible, for tasks that name their device ``cuda:N``), and the workers on
    one GPU split its budget.  ``threads``: torch threads per worker, default
    ``cores // workers`` (at least 1).
    """
    if cores < 1:
        raise LandscapeError(f"cores: must be >= 1, got {cores}")
    n = workers if workers is not None else (len(gpus) or cores)
    if n < 1:
        raise LandscapeError(f"workers: must be >= 1, got {n}")
    if threads is not None and threads < 1:
        raise LandscapeError(f"threads: must be >= 1, got {threads}")
    if len(budgets) != max(1, len(gpus)):
        raise LandscapeError(f"budgets: need one per GPU (or one for the CPU), got {len(budgets)}")
    per = threads or max(1, cores // n)
    slots = [i % len(gpus) for i in range(n)] if gpus else [0] * n
    plans = []
    for i, slot in enumerate(slots):
        budget = int(budgets[slot] // slots.count(slot))
        env = {"OMP_NUM_THREADS": str(per), "MKL_NUM_THREADS": str(per),
               "LANDSCAPE_MAX_MEMORY": str(budget)}
        if gpus and pin:
            env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot])
        device = f"cuda (GPU {gpus[slot]})" if gpus else "cpu"
        plans.append(WorkerPlan(f"worker-{i}", per, budget, device, env))
    return plans


def _task_gpus(tasks: Sequence) -> tuple[list[str], list[int], bool]:
    """The GPUs the tasks will use, their budgets, and whether workers are pinned."""
    devices = {str(t.opts.get("device", "auto")) for t in tasks}
    if not devices or devices & {"cpu"} or not any(d.startswith(("cuda", "auto")) for d in devices):
        return [], [], True
    import torch

    if not torch.cuda.is_available():
        return [], [], True
    from ..memory import memory_budget

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    count = torch.cuda.device_count()
    ids = (ids or [str(i) for i in range(count)])[:count]
    explicit = sorted({int(d.split(":")[1]) for d in devices if re.fullmatch(r"cuda:\d+", d)})
    if explicit:  # a named device index only means something with every GPU visible
        return ([ids[i] for i in explicit if i < len(ids)],
                [memory_budget(torch.device("cuda", i)) for i in explicit if i < len(ids)], False)
    return ids, [memory_budget(torch.device("cuda", i)) for i in range(len(ids))], True


def local_plan(tasks: Sequence, workers: int | None = None,
               threads: int | None = None) -> list[WorkerPlan]:
    """:func:`plan_workers` for this machine and these tasks: one worker per visible
    GPU when the tasks run on CUDA, else one per usable core; budgets from
    :func:`landscape.memory.memory_budget` (``LANDSCAPE_MAX_MEMORY`` is the total)."""
    from ..memory import memory_budget

    gpus, budgets, pin = _task_gpus(tasks)
    if not gpus:
        budgets = [memory_budget("cpu")]
    return plan_workers(usable_cores(), gpus, budgets, workers, threads, pin)


def start_client(workers: int | None = None, scheduler: str | None = None,
                 plan: Sequence[WorkerPlan] | None = None):
    """A ``dask.distributed.Client``: to ``scheduler`` when given, else to a new local
    cluster of single-threaded worker processes, one per entry of ``plan`` (default:
    :func:`plan_workers` for ``workers`` on this machine's CPU), each started with
    its plan's environment (no dashboard)."""
    from dask.distributed import Client, Nanny, Scheduler, SpecCluster

    quiet_dask()
    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise LandscapeError(f"scheduler: cannot reach {scheduler!r} ({exc})") from None
    if plan is None:
        from ..memory import memory_budget

        plan = plan_workers(usable_cores(), budgets=[memory_budget("cpu")], workers=workers)
    from ..memory import total_memory

    host_share = total_memory() // len(plan)
    specs = {p.name: {"cls": Nanny, "options": {
        "nthreads": 1, "env": dict(p.env), "memory_limit": host_share,
        "silence_logs": logging.CRITICAL}} for p in plan}
    cluster = SpecCluster(workers=specs, silence_logs=logging.CRITICAL, scheduler={
        "cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0, "protocol": "tcp://",
                                      **QUIET_SCHEDULER}})
    return Client(cluster)


def _close(client) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()

