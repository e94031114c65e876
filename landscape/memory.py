"""Memory budgets and CPU threads: every analysis sizes its buffers against one
number, and takes as many threads as it has cores.

The budget is the memory an analysis may fill with its own working buffers
(slice chunks, Krylov bases, activation caches).  By default it is half of the
memory available when the call starts: on a CUDA device the free memory
``torch.cuda.mem_get_info`` reports, on the CPU the smaller of the kernel's
``MemAvailable`` and the cgroup's remaining limit.  ``max_memory`` (the
command line's ``--max-memory``, e.g. ``6GB``) replaces it, and so does the
environment variable ``LANDSCAPE_MAX_MEMORY``.

Work whose smallest unit does not fit is refused before anything is
allocated, with the size it would need (:func:`require`).

Threads: torch's intra-op pool runs on OpenMP threads, and the OpenMP runtime
(libgomp in torch's wheels) makes an idle thread spin for a while before it
sleeps.  Between the many small operations of a small network every thread
spins, so when another process holds one of the cores the spinning threads take
its time slices from the thread that has work: measured on 2 cores, 11x the
wall time and 9x the CPU time of 50 gradients of the ``cnn``
(bench/threads_bench.py, bench/RESULTS.md).  :func:`thread_defaults`, which the
command line calls before torch loads, makes idle threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a wait policy.
:func:`use_threads` sets the pool to :func:`usable_cores` divided by the
processes sharing them (never above ``OMP_NUM_THREADS`` where it is set), or to
an explicit count.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import LandscapeError

DEFAULT_FRACTION = 0.5
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6,
          "mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12,
          "tib": 2**40}


def parse_size(value, name: str = "max_memory") -> int:
    """Bytes from ``123``, ``512MB``, ``6GB``, ``1.5GiB`` (case-insensitive)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise LandscapeError(f"{name} must be positive, got {value!r}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise LandscapeError(f"{name} must be a size such as 512MB or 6GB, got {value!r}")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise LandscapeError(f"{name} must be positive, got {value!r}")
    return size


def format_bytes(n: float) -> str:
    """``1.5 GB`` style, decimal units."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup (v2 or v1) memory limit, if any."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_memory(device=None) -> int:
    """Bytes available now on ``device`` (a torch device or its name; CPU by default)."""
    kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
    if kind == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    room = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                room = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if room is None:  # not Linux: fall back to the physical size
        try:
            room = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            room = 8 * 2**30
    cgroup = _cgroup_room()
    return int(room if cgroup is None else min(room, cgroup))


def total_memory() -> int:
    """Bytes of physical memory (the cgroup's limit where that is lower)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit != "max" and int(limit) < total:
            total = int(limit)
        break
    return int(total)


def memory_budget(device=None, max_memory=None) -> int:
    """Bytes an analysis may use for its buffers on ``device``.

    ``max_memory`` (bytes or a size string) wins; then ``LANDSCAPE_MAX_MEMORY``;
    else :data:`DEFAULT_FRACTION` of :func:`available_memory`.
    """
    if max_memory is not None:
        return parse_size(max_memory)
    env = os.environ.get("LANDSCAPE_MAX_MEMORY")
    if env:
        return parse_size(env, "LANDSCAPE_MAX_MEMORY")
    return int(DEFAULT_FRACTION * available_memory(device))


def activation_bytes(model, x, retained: bool = False) -> int:
    """Memory one sample of ``x`` takes in a forward pass of ``model``, probed on
    two samples without gradients (put the model in the mode you will run it in:
    a probe in train mode would update BatchNorm statistics).

    Peak-ish: three times the largest output of any leaf module (its input, its
    output and a shortcut alive at once).  ``retained``: the sum of every leaf's
    output, what autograd keeps for a backward pass.
    """
    import torch

    probe = x[:2]  # two samples: batch statistics need more than one
    sizes: list[int] = [probe[:1].numel() * probe.element_size()]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor) and out.dim() > 0:
            sizes.append(out.numel() // out.shape[0] * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    return int(sum(sizes)) if retained else 3 * max(sizes)


def require(nbytes: float, budget: float, what: str, hint: str = "") -> None:
    """Refuse work whose smallest unit (``nbytes``) exceeds ``budget``."""
    if nbytes > budget:
        message = (f"{what} needs {format_bytes(nbytes)} of memory, more than the budget of "
                   f"{format_bytes(budget)}")
        raise LandscapeError(message + (f"; {hint}" if hint else " (raise it with --max-memory)"))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _omp_threads() -> int | None:
    """The positive integer in ``OMP_NUM_THREADS``, if the environment sets one."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


# Variables that decide how the OpenMP runtime's idle threads wait; a user who sets
# any of them has chosen, and :func:`thread_defaults` leaves the choice alone.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
DEFAULT_WAIT_POLICY = "PASSIVE"
_SET_BY = "LANDSCAPE_SET_WAIT_POLICY"  # marks the policy as ours, for child processes too


def thread_defaults() -> dict[str, str]:
    """Make the OpenMP threads that torch's intra-op pool uses sleep, not spin, while
    they wait for work (``OMP_WAIT_POLICY=PASSIVE``), unless the environment already
    sets one of :data:`WAIT_VARIABLES`; returns what it set.

    The runtime reads the variable once, when it loads with torch: call this before
    the first ``import torch`` (the command line does), later it has no effect.
    """
    if any(os.environ.get(name) for name in WAIT_VARIABLES):
        return {}  # the user's choice (or ours, inherited by a child process)
    os.environ["OMP_WAIT_POLICY"] = DEFAULT_WAIT_POLICY
    os.environ[_SET_BY] = DEFAULT_WAIT_POLICY
    return {"OMP_WAIT_POLICY": DEFAULT_WAIT_POLICY}


def describe_threads() -> str:
    """Torch's intra-op threads and how the OpenMP threads wait, each with where the
    setting came from, for ``landscape info``."""
    import torch

    count = f"{torch.get_num_threads()} ({'OMP_NUM_THREADS' if _omp_threads() else 'one per core'})"
    waits = [f"{name}={os.environ[name]}" for name in WAIT_VARIABLES if os.environ.get(name)]
    if not waits:
        return f"{count}; OpenMP runtime's own wait policy"
    ours = waits == [f"OMP_WAIT_POLICY={os.environ.get(_SET_BY)}"]
    source = "set by landscape" if ours else "from the environment"
    return f"{count}; idle threads wait as {', '.join(waits)} ({source})"


def use_threads(threads: int | None = None, share: int = 1) -> int:
    """Set torch's intra-op threads to ``threads``, or to the usable cores divided
    among ``share`` processes (at least 1) and at most ``OMP_NUM_THREADS`` where
    the environment sets it; returns the count set."""
    import torch

    if threads is not None and threads < 1:
        raise LandscapeError(f"threads: must be >= 1, got {threads}")
    count = int(threads or max(1, usable_cores() // max(1, share)))
    if threads is None and _omp_threads() is not None:
        count = min(count, _omp_threads())
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
