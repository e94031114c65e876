"""The heap setting around long evaluation loops: set once, restored once, opt-out."""

import platform

import pytest

from landscape import _heap


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

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


@pytest.mark.parametrize("env", [("LANDSCAPE_HEAP_REUSE", "0"), ("MALLOC_MMAP_MAX_", "8")])
def test_opt_out_and_user_tuning_leave_malloc_alone(fake, monkeypatch, env):
    monkeypatch.setenv(*env)
    with _heap.reuse_freed_memory():
        pass
    assert fake.calls == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_real_glibc_block_runs_and_allocates():
    import torch

    assert _heap._glibc() is not None, "glibc present but not detected"
    with _heap.reuse_freed_memory():
        big = torch.ones(64 * 1024 * 1024 // 4)  # above glibc's largest mmap threshold
        assert float(big.sum()) == big.numel()
    assert _heap._depth == 0
