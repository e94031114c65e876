"""Keep freed memory in the process heap during long evaluation loops.

A slice or a Hessian estimate runs the same forward (and backward) pass hundreds
of times, each allocating the same large activation tensors and freeing them
again.  glibc serves every allocation above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and returns it to the kernel on ``free``, so each pass
page-faults its activations in anew; on a 2-core CPU that was 60 % of the
wall time of a small convolutional network (``bench/RESULTS.md``).  Inside
:func:`reuse_freed_memory` large blocks come from the heap instead and freed
blocks are reused; on leaving it glibc's default values are set again and the
free memory is handed back to the kernel with ``malloc_trim`` (glibc offers no
way to read its settings, and setting any of them switches off its dynamic
adjustment of the mmap threshold, which therefore stays where it was).

A no-op off glibc, when ``LANDSCAPE_HEAP_REUSE=0``, and when the user has tuned
malloc through its own environment variables.  ``mallopt`` answers 1 when it
accepts a setting: when it refuses one, the settings already made are undone
and the block runs with malloc as it was (:func:`active` says which); a refused
restore is reported as a ``RuntimeWarning``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
import warnings
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# glibc's documented defaults (mallopt(3)).
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
_KEEP = 2**31 - 1  # largest value mallopt's int argument takes

_USER_TUNING = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                "GLIBC_TUNABLES")

_lock = threading.Lock()
_depth = 0
_active = False
_SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP))
_DEFAULTS = ((_M_MMAP_MAX, _DEFAULT_MMAP_MAX), (_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD))


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # present in glibc only  # noqa: B018
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return mallopt, trim


def _enabled() -> bool:
    if os.environ.get("LANDSCAPE_HEAP_REUSE", "1").strip() in ("0", "false", "no", "off"):
        return False
    return not any(name in os.environ for name in _USER_TUNING)


@contextmanager
def reuse_freed_memory():
    """Within the block, glibc serves large allocations from the heap and keeps
    freed memory for reuse.  Re-entrant and thread-safe: the settings change on
    entering the outermost block and are restored on leaving it."""
    global _depth
    libc = _glibc() if _enabled() else None
    if libc is None:
        yield
        return
    mallopt, trim = libc
    global _active
    with _lock:
        _depth += 1
        if _depth == 1:
            _active = _apply(mallopt, _SETTINGS)
            if not _active:  # refused: leave malloc as it was
                _apply(mallopt, _DEFAULTS)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _active:
                _active = False
                restored = _apply(mallopt, _DEFAULTS)
                trim(0)
                if not restored:
                    warnings.warn("glibc refused to restore its malloc defaults (mallopt returned "
                                  "0); large blocks may stay in the heap", RuntimeWarning,
                                  stacklevel=3)


def _apply(mallopt, settings) -> bool:
    """Each ``(param, value)`` through ``mallopt``; whether every one was accepted
    (``mallopt`` returns 1 on success, 0 on error)."""
    ok = True
    for param, value in settings:
        ok = mallopt(param, value) == 1 and ok
    return ok


def active() -> bool:
    """Whether freed memory is being kept for reuse right now (inside a block whose
    settings glibc accepted)."""
    return _active


def hand_back() -> None:
    """Return the heap's free memory to the kernel now (``malloc_trim``), for a
    loop whose next phase allocates buffers of another size: the blocks freed by
    the previous phase would otherwise stay resident beside the new ones."""
    libc = _glibc() if _active else None
    if libc is not None:
        libc[1](0)


# glibc's largest mmap threshold on 64-bit systems: blocks above it are mapped
# afresh in its default mode whatever the threshold has adapted to.
LARGE_BLOCK = 32 * 2**20


def reusing_freed_memory(fn=None, *, block_bytes=None):
    """Decorator: run ``fn`` inside :func:`reuse_freed_memory`.

    ``block_bytes(*args, **kwargs)``, when given, is the size of the largest
    blocks the call allocates again and again (a parameter-sized vector).  Above
    :data:`LARGE_BLOCK` the call runs with malloc as it is: the page faults of a
    fresh mapping are then a negligible share of the work done with the block,
    and blocks of that size kept in the heap fragment it (the documentation's resnet18
    Hessian example: Lanczos peaked at 5.50 GB of RSS with the heap reused,
    4.86 GB without, in the same time)."""
    if fn is None:
        return functools.partial(reusing_freed_memory, block_bytes=block_bytes)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if block_bytes is not None and block_bytes(*args, **kwargs) > LARGE_BLOCK:
            return fn(*args, **kwargs)
        with reuse_freed_memory():
            return fn(*args, **kwargs)

    return wrapper
