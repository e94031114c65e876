"""Ablation sweeps on Dask: one task per point of a Cartesian product, one file
per task, one combined Dataset at the end.

A sweep runs one analysis of :data:`landscape.analyses.ANALYSES` (``slice``,
``hessian``, ``maxact``, ``tsne``) at every point of

    model × init × bias_scale × seed × state        (state: random / trained)

Each task is the analysis's own options dict, filled in by the same click
parameters the command ``landscape ANALYSIS ...`` parses, so a task is exactly
what that command would run.  Tasks write their own netCDF file atomically
(``DIR/ANALYSIS/MODEL_INIT_bS_sSEED_STATE.nc``, the coordinates also in the
file's attrs); running the sweep again skips every task whose file exists,
loads and was made with the same options, so a crash or a kill loses nothing
finished.  A failing task is recorded with its error and does not stop the
others.  :func:`combine` then stacks the parts along the sweep dimensions into
one Dataset of kind ``sweep``; per-part headline numbers kept in attrs
(``loss_frac_quasi_convex``, ...) become data variables over those dimensions.

A local cluster is laid out by :func:`plan_workers`: one worker per visible GPU,
pinned with ``CUDA_VISIBLE_DEVICES``, when the tasks run on CUDA, else one per
core this process may use; each worker starts with its share of the memory
budget (``LANDSCAPE_MAX_MEMORY``), and each task sets torch's threads to the
cores per worker and records them in its result's ``threads`` attribute.

This module reads the analysis registry of :mod:`landscape.analyses` (lazily,
inside the functions that need it) and never the command line.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import LandscapeError
from .memory import usable_cores, use_threads
from .results import PROVENANCE, load, to_json

SWEEP_DIMS = ("model", "init", "bias_scale", "seed", "state")
STATES = ("random", "trained")
# Options the sweep sets for each task; passing them through to the analysis is an error.
RESERVED = {"--model": "--model", "--init": "--init", "--bias-scale": "--bias-scale",
            "--seed": "--seeds", "--out": "--out-dir", "--checkpoint": "--trained",
            "--overwrite": "--overwrite"}
# Scalar per-part attrs that become data variables of the combined Dataset besides
# every "*frac_*" attr.
HEADLINE_ATTRS = ("negative_mass", "top_eigenvalue", "trace", "index")
# Per-part attrs that differ between parts by construction (coordinates, time stamps).
# No dashboard; the scheduler's small HTTP server on a free port rather than 8787.
QUIET_SCHEDULER = {"dashboard": False, "dashboard_address": ":0"}
VOLATILE_ATTRS = ("created", "config", "checkpoint", "sweep_task", "state", "out")


# ----------------------------------------------------------------------------- parsing lists

def parse_list(text: str, kind: type = str, name: str = "value") -> list:
    """``"0,0.1,1"`` -> ``[0.0, 0.1, 1.0]`` (``kind`` float), ``"a,b"`` -> ``["a", "b"]``.

    Empty items, unreadable numbers and repeated values are a :class:`LandscapeError`
    naming the option and the item.
    """
    if text is None or not str(text).strip():
        raise LandscapeError(f"{name}: empty list")
    items = [item.strip() for item in str(text).split(",")]
    out = []
    for item in items:
        if not item:
            raise LandscapeError(f"{name}: empty item in {text!r}")
        if kind is str:
            out.append(item)
            continue
        try:
            value = kind(item)
            if kind is float and not np.isfinite(value):
                raise ValueError
        except ValueError:
            what = "a number" if kind is float else "an integer"
            raise LandscapeError(f"{name}: cannot read {item!r} in {text!r} as {what}") from None
        out.append(value)
    repeated = sorted({str(v) for v in out if out.count(v) > 1})
    if repeated:
        raise LandscapeError(f"{name}: {', '.join(repeated)} repeated in {text!r}")
    return out


def parse_seeds(text: str, name: str = "seeds") -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,3,7"``; ranges and items mix: ``"0-2,9"``."""
    if text is None or not str(text).strip():
        raise LandscapeError(f"{name}: empty list")
    seeds: list[int] = []
    for item in str(text).split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi < lo:
                raise LandscapeError(f"{name}: range {item!r} in {text!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", item):
            seeds.append(int(item))
        else:
            raise LandscapeError(f"{name}: cannot read {item!r} in {text!r} as a seed or a range "
                                 "such as 0-4")
    if len(set(seeds)) != len(seeds):
        raise LandscapeError(f"{name}: a seed is repeated in {text!r}")
    return seeds


# ----------------------------------------------------------------------------- tasks

@dataclass
class Task:
    """One point of a sweep: the analysis, its coordinates and its options."""

    analysis: str
    model: str
    init: str
    bias_scale: float
    seed: int
    state: str
    path: str
    opts: dict = field(default_factory=dict)
    threads: int | None = None

    @property
    def label(self) -> str:
        return f"{self.analysis}/{Path(self.path).name}"

    def identity(self) -> str:
        """JSON of what determines the result: the options minus where it is
        written, and the content of the checkpoint it loads (retraining into the
        same path makes a new task)."""
        opts = {k: v for k, v in self.opts.items() if k not in ("out", "overwrite")}
        ckpt = self.opts.get("checkpoint")
        content = file_fingerprint(ckpt) if ckpt else None
        return to_json({"analysis": self.analysis, "opts": opts, "checkpoint_content": content})


# Bytes of a file hashed for its fingerprint: enough to tell checkpoints apart
# without reading gigabytes on every check.
FINGERPRINT_HEAD = 2**20


def file_fingerprint(path) -> str:
    """``size:mtime_ns:sha256(first MiB)`` of ``path`` ("missing" when it is not a file)."""
    import hashlib

    path = Path(path)
    try:
        info = path.stat()
        with path.open("rb") as f:
            head = hashlib.sha256(f.read(FINGERPRINT_HEAD)).hexdigest()
    except OSError:
        return "missing"
    return f"{info.st_size}:{info.st_mtime_ns}:{head}"


def task_name(model: str, init: str, bias_scale: float, seed: int, state: str) -> str:
    """``mlp_xavier_b0.1_s0_random.nc``: unique per point, readable; the
    coordinates themselves live in the file's attrs."""
    from .analyses import safe_name

    return f"{safe_name(model)}_{safe_name(init)}_b{bias_scale:g}_s{seed}_{state}.nc"


def _check_pass_through(args: Sequence[str]) -> None:
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in RESERVED:
            raise LandscapeError(f"sweep: {flag} is set by the sweep for each task; use "
                                 f"{RESERVED[flag]} of `landscape sweep` instead")


def _trained_checkpoint(template: str, model: str, init: str, bias_scale: float, seed: int) -> str:
    try:
        return template.format(model=model, init=init, bias_scale=f"{bias_scale:g}", seed=seed)
    except (KeyError, IndexError, ValueError) as exc:
        raise LandscapeError(f"trained: cannot fill {template!r}: use the fields {{model}}, {{init}}, "
                             f"{{bias_scale}}, {{seed}} ({type(exc).__name__}: {exc})") from None


def expand_tasks(analysis: str, models: Sequence[str], inits: Sequence[str],
                 bias_scales: Sequence[float], seeds: Sequence[int], out_dir,
                 states: Sequence[str] = ("random",), trained: str | None = None,
                 args: Sequence[str] = (), threads: int | None = None) -> list[Task]:
    """Every point of the product, each with the options the analysis command's
    click parser gives ``args`` plus the point's own ``--model/--init/--bias-scale/
    --seed/--out`` (and ``--checkpoint`` for state ``trained``).

    ``trained``: a checkpoint, or a template filled per point with ``{model}``,
    ``{init}``, ``{bias_scale}``, ``{seed}`` (``ckpt/{model}_{init}_s{seed}.pt``).
    Every value is checked before this returns: a bad one (``--init xavier,nosuch``)
    is a LandscapeError and no task runs.
    """
    from . import analyses_sae  # noqa: F401  (registers sae)
    from .analyses import ANALYSES

    if analysis not in ANALYSES:
        raise LandscapeError(f"sweep: unknown analysis {analysis!r}; choose one of "
                             f"{', '.join(sorted(ANALYSES))}")
    for state in states:
        if state not in STATES:
            raise LandscapeError(f"states: unknown value {state!r}; choose random and/or trained")
    if "trained" in states and not trained:
        raise LandscapeError("states: 'trained' needs --trained CKPT")
    _check_pass_through(args)
    entry = ANALYSES[analysis]
    folder = Path(out_dir) / analysis
    tasks = []
    for model in models:
        for init in inits:
            for bias in bias_scales:
                for seed in seeds:
                    for state in states:
                        path = folder / task_name(model, init, bias, seed, state)
                        argv = ["--model", model, "--init", init, "--bias-scale", repr(float(bias)),
                                "--seed", str(seed), "--out", str(path), "--overwrite"]
                        if state == "trained":
                            ckpt = _trained_checkpoint(trained, model, init, bias, seed)
                            if not Path(ckpt).is_file():
                                raise LandscapeError(f"trained: no such checkpoint {ckpt!r} "
                                                     f"(for {model}, {init}, bias {bias:g}, seed {seed})")
                            argv += ["--checkpoint", ckpt]
                        opts = entry.parse([*argv, *args], prog=f"sweep {analysis}")
                        tasks.append(Task(analysis, model, init, float(bias), int(seed), state,
                                          str(path), opts, threads))
    _check_points(tasks)
    return tasks


def _check_points(tasks: Sequence[Task]) -> None:
    """Validate every model x init x bias scale of the sweep before any task runs
    (the models are built on the meta device, so this costs no memory)."""
    from .analyses import check_model

    seen = set()
    for task in tasks:
        point = (task.model, task.init, task.bias_scale)
        if point in seen:
            continue
        seen.add(point)
        try:
            check_model(task.opts)
        except LandscapeError as exc:
            raise LandscapeError(f"sweep: model {task.model!r}, init {task.init!r}, bias scale "
                                 f"{task.bias_scale:g}: {exc}") from None


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


def run_task(task: Task | dict) -> dict:
    """Run one task in this process (a Dask worker); never raises for a task's own
    failure: returns ``{"label", "path", "error"}`` with ``error`` None on success."""
    if isinstance(task, dict):
        task = Task(**task)
    try:
        import torch

        from . import analyses_sae  # noqa: F401  (registers sae)
        from .analyses import ANALYSES

        use_threads(task.threads, _concurrent_tasks())
        Path(task.path).parent.mkdir(parents=True, exist_ok=True)
        ds, setup = ANALYSES[task.analysis].run(dict(task.opts))
        ds.attrs["sweep_task"] = task.identity()
        ds.attrs["threads"] = torch.get_num_threads()
        setup.finish(ds)
        return {"label": task.label, "path": task.path, "error": None}
    except Exception as exc:  # recorded, never fatal to the sweep
        message = " ".join(str(exc).split())
        if not isinstance(exc, LandscapeError):
            message = f"{type(exc).__name__}: {message}"
        return {"label": task.label, "path": task.path, "error": message}


# ----------------------------------------------------------------------------- running on Dask

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


def _task_gpus(tasks: Sequence[Task]) -> tuple[list[str], list[int], bool]:
    """The GPUs the tasks will use, their budgets, and whether workers are pinned."""
    devices = {str(t.opts.get("device", "auto")) for t in tasks}
    if not devices or devices & {"cpu"} or not any(d.startswith(("cuda", "auto")) for d in devices):
        return [], [], True
    import torch

    if not torch.cuda.is_available():
        return [], [], True
    from .memory import memory_budget

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    count = torch.cuda.device_count()
    ids = (ids or [str(i) for i in range(count)])[:count]
    explicit = sorted({int(d.split(":")[1]) for d in devices if re.fullmatch(r"cuda:\d+", d)})
    if explicit:  # a named device index only means something with every GPU visible
        return ([ids[i] for i in explicit if i < len(ids)],
                [memory_budget(torch.device("cuda", i)) for i in explicit if i < len(ids)], False)
    return ids, [memory_budget(torch.device("cuda", i)) for i in range(len(ids))], True


def local_plan(tasks: Sequence[Task], workers: int | None = None,
               threads: int | None = None) -> list[WorkerPlan]:
    """:func:`plan_workers` for this machine and these tasks: one worker per visible
    GPU when the tasks run on CUDA, else one per usable core; budgets from
    :func:`landscape.memory.memory_budget` (``LANDSCAPE_MAX_MEMORY`` is the total)."""
    from .memory import memory_budget

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
        from .memory import memory_budget

        plan = plan_workers(usable_cores(), budgets=[memory_budget("cpu")], workers=workers)
    from .memory import total_memory

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
    ``failures``; the others go on.
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
                future = client.submit(run_task, asdict(t), pure=False,
                                       key=f"landscape-{t.label}-{os.urandom(4).hex()}")
                futures[future] = t
            for future in as_completed(list(futures)):
                t = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # KilledWorker and the like
                    result = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
                if result["error"] is not None:
                    failures[t.label] = result["error"]
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if own:
                _close(client)
    return SweepOutcome(list(tasks), skipped, [t.label for t in todo], failures)


# ----------------------------------------------------------------------------- combining

def _coordinates(ds: xr.Dataset, path) -> dict:
    a = ds.attrs
    bias = a.get("bias_scale", "default")
    if isinstance(bias, str):
        try:
            bias = float(bias)
        except ValueError:
            raise LandscapeError(f"{str(path)!r}: bias_scale is the init's default; a sweep needs "
                                 "numeric bias scales (pass --bias-scale)") from None
    state = a.get("state") or ("trained" if a.get("checkpoint") else "random")
    return {"model": str(a.get("model", "unknown")), "init": str(a.get("init", "unknown")),
            "bias_scale": float(bias), "seed": int(a.get("seed", -1)), "state": str(state)}


def _is_headline(name: str, value) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and ("frac_" in name or name in HEADLINE_ATTRS)


def _prepare(ds: xr.Dataset, coords: dict) -> xr.Dataset:
    """A part as a point of the sweep: headline attrs as variables, bools as 0/1
    floats (a missing point is NaN), sweep coordinates as scalars."""
    ds = ds.copy()
    for name, value in list(ds.attrs.items()):
        if _is_headline(name, value):
            ds[name] = ((), float(value))
            del ds.attrs[name]
    for name in list(ds.data_vars):
        if ds[name].dtype == bool:
            ds[name] = ds[name].astype("float64")
    for name in ds.variables:
        # The file's on-disk dtypes would turn the NaN of a missing point into garbage.
        ds[name].encoding = {}
    for name in VOLATILE_ATTRS:
        ds.attrs.pop(name, None)
    return ds.assign_coords(coords)


def combine(paths: Sequence, tasks: Sequence[dict] | None = None,
            failures: dict[str, str] | None = None, analysis: str | None = None) -> xr.Dataset:
    """One Dataset of kind ``sweep`` from results of one analysis, placed along
    ``model, init, bias_scale, seed, state`` by their attrs.

    Points without a part (failed tasks) hold NaN.  Boolean verdicts become 0/1
    floats so that their mean over a dim is a fraction.  Attrs: those every part
    shares, ``analysis``, ``tasks`` (JSON list of each part's coordinates and
    file) and ``failures`` (JSON list of ``{"task", "error"}``).
    """
    if not paths:
        raise LandscapeError("combine: no results to combine")
    parts, coords_seen, records = [], {}, []
    kinds = set()
    for path in paths:
        ds = load(path)
        if ds.attrs["kind"] == "sweep":
            raise LandscapeError(f"combine: {str(path)!r} is a sweep already")
        kinds.add(ds.attrs["kind"])
        coords = _coordinates(ds, path)
        key = tuple(coords[d] for d in SWEEP_DIMS)
        if key in coords_seen:
            raise LandscapeError(f"combine: {str(path)!r} and {coords_seen[key]!r} are the same point "
                                 f"of the sweep ({coords})")
        coords_seen[key] = str(path)
        records.append({**coords, "file": Path(path).name})
        parts.append(_prepare(ds, coords))
    if len(kinds) > 1:
        raise LandscapeError(f"combine: results of different kinds ({', '.join(sorted(kinds))})")
    stacked = xr.concat(parts, dim="task", data_vars="all", coords=list(SWEEP_DIMS),
                        compat="equals", join="outer", combine_attrs="drop_conflicts")
    combined = stacked.set_index(task=list(SWEEP_DIMS)).unstack("task")
    order = [d for d in SWEEP_DIMS]
    for name in combined.data_vars:
        rest = [d for d in combined[name].dims if d not in order]
        combined[name] = combined[name].transpose(*order, *rest)
    combined = combined.transpose(*order, ...)
    attrs = {k: v for k, v in combined.attrs.items() if k not in PROVENANCE or k in ("dataset", "device")}
    attrs["part_kind"] = kinds.pop()
    attrs.update({
        "kind": "sweep",
        "analysis": analysis or attrs["part_kind"],
        "model": ",".join(map(str, combined.model.values)),
        "init": ",".join(map(str, combined.init.values)),
        "bias_scale": ",".join(f"{b:g}" for b in combined.bias_scale.values),
        "seed": -1,
        "tasks": to_json(tasks if tasks is not None else records),
        "failures": to_json([{"task": k, "error": v} for k, v in sorted((failures or {}).items())]),
    })
    from . import __version__

    attrs["landscape_version"] = __version__
    from datetime import datetime, timezone

    attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    attrs["config"] = to_json({"analysis": attrs["analysis"], "parts": len(parts)})
    combined.attrs = attrs
    return combined


def failures_of(ds: xr.Dataset) -> list[dict]:
    """The failed tasks recorded in a sweep's attrs."""
    return json.loads(ds.attrs.get("failures", "[]"))


# ----------------------------------------------------------------------------- headline numbers

# Preferred order of the headline numbers; any other "*_frac_quasi_con*"/"*_frac_either"/
# "*_frac_constant" variable follows them.  The shape fractions count only curves that are
# not constant; the fraction of constant curves stands beside them.
HEADLINES = ("loss_frac_quasi_convex", "loss_frac_quasi_concave", "loss_frac_constant",
             "activation_frac_quasi_convex", "activation_frac_quasi_concave",
             "activation_frac_either", "activation_frac_constant", "negative_mass",
             "top_eigenvalue", "blind_accuracy", "blind_auroc")

MAXACT_HEADLINES = ("rho", "p_hit", "n_maxima")
# SAE results: one headline per variant (trained, init, ...), the mean over layers and latents.
SAE_HEADLINES = ("fvu", "dead_frac", "loss_recovered_mean", "kl", "interp_auroc", "token_entropy",
                 "label_entropy")


def headline_variables(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """The headline numbers of a sweep, each over the sweep dims only: the
    convexity fractions (of the curves that are not constant) and the fraction of
    constant curves, ``negative_mass`` (mean over any other dim), the top
    eigenvalue (``eigenvalue`` maximised over its other dims) and the unit means
    of the max-activation ``rho``, ``p_hit``, ``n_maxima``, and for SAE results each
    variant's mean ``fvu``, ``dead_frac``, ``loss_recovered_mean``, ``kl``,
    ``interp_auroc``, ``token_entropy``, ``label_entropy``, whichever are present."""
    out: dict[str, xr.DataArray] = {}

    def over_sweep(da: xr.DataArray, how: str) -> xr.DataArray:
        extra = [d for d in da.dims if d not in SWEEP_DIMS]
        return getattr(da, how)(extra) if extra else da

    names = [n for n in HEADLINES if n in ds.data_vars]
    names += sorted(n for n in ds.data_vars if n not in names and re.search(
        r"frac_(quasi_convex|quasi_concave|either|constant)$", str(n)))
    for name in names:
        out[name] = over_sweep(ds[name], "mean")
    if "top_eigenvalue" not in out and "eigenvalue" in ds.data_vars:
        out["top_eigenvalue"] = over_sweep(ds["eigenvalue"], "max")
    for name in MAXACT_HEADLINES:  # max-activation reliability, averaged over units
        if name in ds.data_vars and np.issubdtype(ds[name].dtype, np.number):
            out[f"mean_{name}"] = over_sweep(ds[name], "mean")
    if "variant" in ds.dims:
        for name in SAE_HEADLINES:
            if name in ds.data_vars:
                for variant in ds.variant.values:
                    out[f"{name}[{variant}]"] = over_sweep(ds[name].sel(variant=variant), "mean")
    return out


def _cell(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "—"
    if values.size == 1:
        return f"{values[0]:.3g}"
    return f"{values.mean():.3g} ± {values.std(ddof=1):.2g}"


def compare_table(ds: xr.Dataset, by: str = "bias_scale") -> list[str]:
    """Lines of a plain-text table: for every headline number and every
    combination of the other sweep dims, one row of ``mean ± std`` over seeds
    (sample std) per value of ``by``."""
    if by not in SWEEP_DIMS or by not in ds.dims:
        raise LandscapeError(f"by: unknown value {by!r}; choose one of {', '.join(SWEEP_DIMS)}")
    variables = headline_variables(ds)
    if not variables:
        raise LandscapeError("compare: no headline numbers (convexity fractions, negative mass, "
                             "eigenvalues) in these results")
    rest = [d for d in SWEEP_DIMS if d not in (by, "seed")]
    labels = [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in ds[by].values]
    width = max(14, *(len(x) for x in labels))
    head = "  ".join(f"{d:>9s}" for d in rest)
    lines = []
    for name, da in variables.items():
        lines.append(f"{name} (mean ± std over seeds) by {by}")
        lines.append(f"{head}  " + "  ".join(f"{x:>{width}s}" for x in labels))
        order = [*rest, by] + (["seed"] if by != "seed" else [])
        stacked = da.transpose(*order).stack(row=rest) if rest else da
        rows = stacked.row.values if rest else [()]
        for row in rows:
            sel = stacked.sel(row=row) if rest else stacked
            key = row if isinstance(row, tuple) else (row,)
            cells = [_cell(np.asarray(sel.isel({by: i}).values, dtype=float).ravel())
                     for i in range(ds.sizes[by])]
            left = "  ".join(f"{(f'{k:g}' if isinstance(k, float) else str(k)):>9s}" for k in key)
            lines.append(f"{left}  " + "  ".join(f"{c:>{width}s}" for c in cells))
        lines.append("")
    return lines[:-1]
