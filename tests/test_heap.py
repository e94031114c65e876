"""The heap setting around long evaluation loops: set once, restored once, opt-out."""

import platform

import pytest

from landscape import _heap


class FakeLibc:
    def __init__(self, refuse=()):
        self.calls = []
        self.refuse = set(refuse)  # (param, value) pairs mallopt rejects

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 0 if (param, value) in self.refuse else 1

    def trim(self, pad):
        self.calls.append(("trim", pad))
        return 1


@pytest.fixture
def fake(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(_heap, "_glibc", lambda: (libc.mallopt, libc.trim))
    for name in ("LANDSCAPE_HEAP_REUSE",) + _heap._USER_TUNING:
        monkeypatch.delenv(name, raising=False)
    return libc


def test_nested_blocks_set_once_and_restore_glibc_defaults_once(fake):
    with _heap.reuse_freed_memory():
        assert fake.calls == [("mallopt", _heap._M_MMAP_MAX, 0),
                              ("mallopt", _heap._M_TRIM_THRESHOLD, _heap._KEEP)]
        with _heap.reuse_freed_memory():
            pass
        assert len(fake.calls) == 2
    assert fake.calls[2:] == [("mallopt", _heap._M_MMAP_MAX, _heap._DEFAULT_MMAP_MAX),
                              ("mallopt", _heap._M_TRIM_THRESHOLD, _heap._DEFAULT_TRIM_THRESHOLD),
                              ("trim", 0)]
    assert _heap._depth == 0


def test_settings_are_restored_when_the_block_raises(fake):
    @_heap.reusing_freed_memory
    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    assert fake.calls[-1] == ("trim", 0)
    assert _heap._depth == 0


def test_calls_on_blocks_above_the_largest_mmap_threshold_keep_malloc_as_it_is(fake):
    # Parameter-sized blocks above 32 MiB kept in the heap fragment it: resnet18's
    # Hessian runs with malloc's defaults, a small network's with the heap reused.
    from torch import nn

    from landscape.hessian import _parameter_bytes

    seen = []

    @_heap.reusing_freed_memory(block_bytes=_parameter_bytes)
    def analysis(model, x):
        seen.append(_heap._depth)

    small, large = nn.Linear(100, 100), nn.Linear(3000, 3000)  # 40 kB and 36 MB of float32
    assert _parameter_bytes(large) == 4 * (3000 * 3000 + 3000) > _heap.LARGE_BLOCK
    analysis(large, None)
    assert fake.calls == [] and seen == [0]
    analysis(small, None)
    assert seen == [0, 1] and fake.calls[0] == ("mallopt", _heap._M_MMAP_MAX, 0)
    assert fake.calls[-1] == ("trim", 0)


@pytest.mark.parametrize("env", [("LANDSCAPE_HEAP_REUSE", "0"), ("MALLOC_MMAP_MAX_", "8")])
def test_opt_out_and_user_tuning_leave_malloc_alone(fake, monkeypatch, env):
    monkeypatch.setenv(*env)
    with _heap.reuse_freed_memory():
        pass
    assert fake.calls == []


def test_a_refused_setting_is_undone_and_the_block_runs_with_malloc_as_it_was(fake):
    fake.refuse = {(_heap._M_TRIM_THRESHOLD, _heap._KEEP)}
    with _heap.reuse_freed_memory():
        assert not _heap.active()
        assert fake.calls == [("mallopt", _heap._M_MMAP_MAX, 0),
                              ("mallopt", _heap._M_TRIM_THRESHOLD, _heap._KEEP),
                              ("mallopt", _heap._M_MMAP_MAX, _heap._DEFAULT_MMAP_MAX),
                              ("mallopt", _heap._M_TRIM_THRESHOLD, _heap._DEFAULT_TRIM_THRESHOLD)]
    assert len(fake.calls) == 4  # nothing to restore, no trim
    assert _heap._depth == 0


def test_a_refused_restore_is_reported(fake):
    fake.refuse = {(_heap._M_MMAP_MAX, _heap._DEFAULT_MMAP_MAX)}
    with pytest.warns(RuntimeWarning, match="refused to restore"):
        with _heap.reuse_freed_memory():
            assert _heap.active()
    assert not _heap.active() and fake.calls[-1] == ("trim", 0)


_REAL_GLIBC = """
import ctypes, sys
import torch
from landscape import _heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    sys.exit(3)  # glibc older than 2.33 has no mallinfo2
libc.mallinfo2.restype = MallInfo2

def mmapped():
    return libc.mallinfo2().hblkhd

assert _heap._glibc() is not None, "glibc present but not detected"
size = 64 * 2**20  # above glibc's largest mmap threshold
before = mmapped()
outside = torch.empty(size // 4).fill_(1)
assert mmapped() - before >= size, "glibc's default: a fresh mmap"
del outside
with _heap.reuse_freed_memory():
    assert _heap.active(), "glibc accepted both settings"
    before = mmapped()
    inside = torch.empty(size // 4).fill_(1)
    assert mmapped() - before < size, "from the heap"
    del inside
assert not _heap.active() and _heap._depth == 0
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_real_glibc_serves_large_blocks_from_the_heap_inside_the_block_only():
    # A fresh interpreter: earlier tests leave free chunks in malloc's arenas that
    # glibc may (rightly) reuse for the block that should be a fresh mmap.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("LANDSCAPE_HEAP_REUSE",) + _heap._USER_TUNING}
    done = subprocess.run([sys.executable, "-c", _REAL_GLIBC], env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode == 3:
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    assert done.returncode == 0, done.stderr[-2000:]
