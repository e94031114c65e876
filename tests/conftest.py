import os

import pytest

from landscape.memory import thread_defaults

# As on the command line: idle OpenMP threads sleep instead of spinning (set before
# torch loads its runtime).  The suite runs on pytest-xdist workers (setup.cfg), and a
# spinning thread of one worker takes the cores of the others.
thread_defaults()

import torch  # noqa: E402

# The cores divided among the workers, at most 2 each: tests use tiny models.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1) // _WORKERS))


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(_THREADS)
    yield


class Tiny:
    """The suite's tiny model and data, with any argument changed:
    ``tiny.mlp(**changes)`` (a Xavier mlp of two layers of 12 units on 4x4 digits)
    and ``tiny.digits(n=64, **changes)`` (digits at 1x4x4, seed 1)."""

    MLP = dict(init="xavier", bias_scale=0.1, seed=3, width=12, depth=2, in_shape=(1, 4, 4))
    DIGITS = dict(in_shape=(1, 4, 4), seed=1)

    @classmethod
    def mlp(cls, **changes):
        import landscape

        return landscape.build_model("mlp", **{**cls.MLP, **changes})

    @classmethod
    def digits(cls, n: int = 64, **changes):
        import landscape

        return landscape.load_dataset("digits", n=n, **{**cls.DIGITS, **changes})


@pytest.fixture
def tiny():
    return Tiny


@pytest.fixture
def tiny_mlp():
    return Tiny.mlp()


@pytest.fixture
def digits_small():
    return Tiny.digits()


@pytest.fixture(autouse=True)
def _strict_model_state(monkeypatch):
    # An analysis that changes its model fails the test instead of being repaired.
    monkeypatch.setenv("LANDSCAPE_STRICT_STATE", "1")
    yield
