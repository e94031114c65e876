"""The tasks of a sweep: one per point of model × init × bias_scale × seed × state,
each the analysis's own options dict, filled in by the same click parameters the
command ``landscape ANALYSIS ...`` parses (:meth:`landscape.commands.registry.Analysis.parse`),
so a task is exactly what that command would run.

This module reads the analysis registry lazily, inside the functions that need it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LandscapeError
from ..results import to_json

STATES = ("random", "trained")
# Options the sweep sets for each task; passing them through to the analysis is an error.
RESERVED = {"--model": "--model", "--init": "--init", "--bias-scale": "--bias-scale",
            "--seed": "--seeds", "--out": "--out-dir", "--checkpoint": "--trained",
            "--overwrite": "--overwrite"}
# Scalar per-part attrs that become data variables of the combined Dataset besides


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
        written and where it is computed (a sharded slice is identical), and the
        content of the checkpoint it loads (retraining into the same path makes a
        new task)."""
        opts = {k: v for k, v in self.opts.items() if k not in ("out", "overwrite", "scheduler")}
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
    from ..commands.setup import safe_name

    return f"{safe_name(model)}_{safe_name(init)}_b{bias_scale:g}_s{seed}_{state}.nc"


def check_pass_through(args: Sequence[str]) -> list[str]:
    """``args`` for every task of a sweep; a flag the sweep sets per task is refused."""
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in RESERVED:
            raise LandscapeError(f"sweep: {flag} is set by the sweep for each task; use "
                                 f"{RESERVED[flag]} of `landscape sweep` instead")
    return list(args)


def _trained_checkpoint(template: str, model: str, init: str, bias_scale: float, seed: int) -> str:
    try:
        return template.format(model=model, init=init, bias_scale=f"{bias_scale:g}", seed=seed)
    except (KeyError, IndexError, ValueError) as exc:
        raise LandscapeError(f"trained: cannot fill {template!r}: use the fields {{model}}, {{init}}, "
                             f"{{bias_scale}}, {{seed}} ({type(exc).__name__}: {exc})") from None


def expand_tasks(analysis: str, models: Sequence[str], inits: Sequence[str],
                 bias_scales: Sequence[float], seeds: Sequence[int], out_dir,
                 states: Sequence[str] = ("random",), trained: str | None = None,
                 args: Sequence[str] = (), threads: int | None = None,
                 options: dict | None = None) -> list[Task]:
    """Every point of the product, each with the analysis's options dict updated
    with the point's own model, init, bias scale, seed and output file (and
    checkpoint for state ``trained``).

    ``options``: the options every task shares, keyed as the analysis's function
    takes them (the ``landscape sweep`` command parses its pass-through flags into
    this); else ``args``, the same flags as strings (``["--grid", "-1:1:11"]``),
    parsed once here.

    ``trained``: a checkpoint, or a template filled per point with ``{model}``,
    ``{init}``, ``{bias_scale}``, ``{seed}`` (``ckpt/{model}_{init}_s{seed}.pt``).
    Every value is checked before this returns: a bad one (``--init xavier,nosuch``)
    is a LandscapeError and no task runs.
    """
    from ..commands.registry import ANALYSES

    if analysis not in ANALYSES:
        raise LandscapeError(f"sweep: unknown analysis {analysis!r}; choose one of "
                             f"{', '.join(sorted(ANALYSES))}")
    entry = ANALYSES[analysis]
    for state in states:
        if state not in STATES:
            raise LandscapeError(f"states: unknown value {state!r}; choose random and/or trained")
    if "trained" in states and not trained:
        raise LandscapeError("states: 'trained' needs --trained CKPT")
    if options is None:
        shared = entry.parse(check_pass_through(args), prog=f"sweep {analysis}")
    else:
        shared = {**entry.parse([]), **options}
    key = {flag: p.name for p in entry.options for flag in p.opts}
    folder = Path(out_dir) / analysis
    tasks = []
    for model in models:
        for init in inits:
            for bias in bias_scales:
                for seed in seeds:
                    for state in states:
                        path = folder / task_name(model, init, bias, seed, state)
                        point = {key["--model"]: model, key["--init"]: init,
                                 key["--bias-scale"]: float(bias), key["--seed"]: int(seed),
                                 key["--out"]: str(path), key["--overwrite"]: True}
                        if state == "trained":
                            ckpt = _trained_checkpoint(trained, model, init, bias, seed)
                            if not Path(ckpt).is_file():
                                raise LandscapeError(f"trained: no such checkpoint {ckpt!r} "
                                                     f"(for {model}, {init}, bias {bias:g}, seed {seed})")
                            point[key["--checkpoint"]] = ckpt
                        tasks.append(Task(analysis, model, init, float(bias), int(seed), state,
                                          str(path), {**shared, **point}, threads))
    _check_points(tasks)
    return tasks


def _check_points(tasks: Sequence[Task]) -> None:
    """Validate every model x init x bias scale of the sweep before any task runs
    (the models are built on the meta device, so this costs no memory)."""
    from ..commands.setup import check_model

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

