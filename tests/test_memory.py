"""The shared memory budget: sizes parse to the right byte counts, the budget
follows its overrides, and work that cannot fit is refused with its size."""

import os

import numpy as np
import pytest
import torch

from landscape.errors import LandscapeError
from landscape.memory import (
    WAIT_VARIABLES,
    available_memory,
    format_bytes,
    memory_budget,
    parse_size,
    require,
    thread_defaults,
)


@pytest.mark.parametrize("text, expected", [("123", 123), ("512MB", 512 * 10**6), ("6GB", 6 * 10**9),
                                            ("1.5GiB", 3 * 2**29), ("2k", 2048), (" 7 mib ", 7 * 2**20)])
def test_sizes_parse_to_bytes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-3GB", "0", "6 parsecs", ""])
def test_bad_sizes_are_refused_by_name(bad):
    with pytest.raises(LandscapeError, match="max_memory"):
        parse_size(bad)


def test_budget_follows_argument_then_environment_then_available(monkeypatch):
    monkeypatch.delenv("LANDSCAPE_MAX_MEMORY", raising=False)
    assert memory_budget(max_memory="1GB") == 10**9
    monkeypatch.setenv("LANDSCAPE_MAX_MEMORY", "3MB")
    assert memory_budget() == 3 * 10**6
    assert memory_budget(max_memory="1GB") == 10**9
    monkeypatch.delenv("LANDSCAPE_MAX_MEMORY")
    free = available_memory()
    assert abs(memory_budget() - free / 2) <= 0.05 * free  # memory moves a little between calls


def test_too_big_is_refused_with_the_size_it_needs():
    with pytest.raises(LandscapeError, match=r"needs 28.6 GB .* budget of 6 GB"):
        require(28.6e9, 6e9, "the density's Krylov basis")
    require(5e9, 6e9, "fits")
    assert format_bytes(1234) == "1.23 kB"


# ----------------------------------------------------------------------------- slices

def _chunks():
    """A progress factory that records the size of every chunk evaluated."""
    sizes = []

    class Bar:
        def update(self, n=1):
            sizes.append(n)

        def close(self):
            pass

    return sizes, lambda total, desc: Bar()


def test_huge_grids_are_refused_before_any_work_with_points_and_size(tiny_mlp, digits_small):
    import tracemalloc

    from landscape import input_slice, loss_slice

    x, y = digits_small
    before = {k: v.clone() for k, v in tiny_mlp.state_dict().items()}
    tracemalloc.start()
    try:
        # 10^10 points x (2 coefficients x 2 copies + 2 values x 4 copies) x 8 bytes = 960 GB
        with pytest.raises(LandscapeError, match=r"loss slice: a grid of 10,000,000,000 points "
                                                 r"needs 960 GB .* budget of 1 GB"):
            loss_slice(tiny_mlp, x, y, grid="-1:1:100000", max_memory="1GB")
        # and 3 anchors x 12 units x 4 copies x 8 bytes + coefficients per point: 11.8 TB
        with pytest.raises(LandscapeError, match=r"input slice \(3 anchors x 12 units\): a grid of "
                                                 r"10,000,000,000 points needs 11.8 TB"):
            input_slice(tiny_mlp, units=12, anchors=x[:3], dims=2, grid="-1:1:100000",
                        max_memory="1GB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # refused, not attempted: no grid-sized array was ever made
    assert all(torch.equal(before[k], v) for k, v in tiny_mlp.state_dict().items())


def test_a_point_that_does_not_fit_is_refused_with_its_size(tiny_mlp, digits_small):
    from landscape import loss_slice

    x, y = digits_small
    with pytest.raises(LandscapeError, match=r"one grid point .* batch of 64\) needs .* "
                                             r"lower --batch-size"):
        loss_slice(tiny_mlp, x, y, grid="-1:1:3", max_memory="2kB")


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_small_budget_chunks_and_gives_the_same_surface(tiny_mlp, digits_small, engine):
    from landscape import loss_slice

    x, y = digits_small
    big_sizes, big_bar = _chunks()
    small_sizes, small_bar = _chunks()
    # One stream: several would cut the chunks finer for balance (landscape.streams).
    big = loss_slice(tiny_mlp, x, y, grid="-1:1:5", engine=engine, max_memory="1GB",
                     progress=big_bar, streams=1)
    # Room for the grid's 25 results and about two points (12x16 + ... parameters and a
    # batch of 64 small activations: a few tens of kB each).
    small = loss_slice(tiny_mlp, x, y, grid="-1:1:5", engine=engine, max_memory="60kB",
                       progress=small_bar, streams=1)
    assert big_sizes == [25] and max(small_sizes) < 5 and sum(small_sizes) == 25
    np.testing.assert_allclose(small.loss.values, big.loss.values, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(small.accuracy.values, big.accuracy.values)


def test_small_budget_input_slice_batches_and_gives_the_same_curves(tiny_mlp, digits_small):
    from landscape import input_slice

    x, _ = digits_small
    big_sizes, big_bar = _chunks()
    small_sizes, small_bar = _chunks()
    kw = dict(units=6, anchors=x[:4], dims=2, grid="-1:1:7", seed=2)
    big = input_slice(tiny_mlp, max_memory="1GB", progress=big_bar, **kw)
    small = input_slice(tiny_mlp, max_memory="40kB", progress=small_bar, **kw)
    assert big_sizes == [4 * 49] and len(small_sizes) > 4 and sum(small_sizes) == 4 * 49
    np.testing.assert_allclose(small.activation.values, big.activation.values, rtol=1e-6, atol=1e-7)


def test_cli_refuses_a_huge_input_grid_in_one_line(tmp_path):
    from click.testing import CliRunner

    from landscape.cli import cli

    out = tmp_path / "x.nc"
    result = CliRunner().invoke(cli, ["slice", "--model", "mlp", "--space", "input", "--dims", "2",
                                      "--grid=-1:1:100000", "--max-memory", "2GB", "--out", str(out)])
    assert result.exit_code == 1
    assert "a grid of 10,000,000,000 points needs" in result.output
    assert "budget of 2 GB" in result.output and "Traceback" not in result.output
    assert not out.exists()
    bad = CliRunner().invoke(cli, ["slice", "--max-memory", "lots", "--out", str(out)])
    assert bad.exit_code == 2 and "max_memory must be a size" in bad.output


def test_maxact_sizes_its_ascent_batch_and_refuses_what_cannot_fit(tiny_mlp, digits_small):
    from landscape.maxact import maxact

    x, _ = digits_small
    kw = dict(units=3, top_k=2, restarts=3, steps=5, seed=1)
    big = maxact(tiny_mlp, x=x, max_memory="1GB", **kw)
    # 3 units x 5 starts x 16 features x 4 bytes x 2 = 1920 bytes of points; a point takes
    # about 2 x (sum of activations) + 4 x 64 bytes: a budget of 4 kB ascends a few at a time.
    small = maxact(tiny_mlp, x=x, max_memory="4kB", **kw)
    assert small.attrs["config"] != big.attrs["config"]  # the batch it ran with is recorded
    np.testing.assert_allclose(small.endpoint_activation, big.endpoint_activation, rtol=1e-5)
    with pytest.raises(LandscapeError, match=r"maxact: 3 units x 5 starts of gradient ascent "
                                             r"needs .* budget of 1 kB"):
        maxact(tiny_mlp, x=x, max_memory="1kB", **kw)


def test_tsne_refuses_a_map_that_cannot_fit(tiny_mlp, digits_small):
    from landscape import tsne_heatmaps

    x, y = digits_small
    # 64 x 16 features x 8 bytes x 2 + 64 x 64 neighbours (perplexity 30: 91, capped at 64) x 32
    with pytest.raises(LandscapeError, match=r"t-SNE of 64 samples x 16 features needs 147 kB"):
        tsne_heatmaps(tiny_mlp, units=2, x=x, y=y, max_memory="100kB")


# ----------------------------------------------------------------------------- threads
# What the OpenMP runtime itself took is read from its own report at load
# (OMP_DISPLAY_ENV=VERBOSE, on stderr): libgomp's spin count is 0 when idle
# threads sleep, 300000 by default and 3e10 under OMP_WAIT_POLICY=ACTIVE.

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_DISPLAY_ENV", "LANDSCAPE_SET_WAIT_POLICY",
                *WAIT_VARIABLES)


def _info(**env_vars):
    """stdout's cpu-threads line and the runtime's own settings of ``landscape info``."""
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env.update(OMP_DISPLAY_ENV="VERBOSE", PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               **env_vars)
    out = subprocess.run([sys.executable, "-m", "landscape", "info"], env=env, capture_output=True,
                         text=True, check=True)
    runtime = dict(line.strip().replace("'", "").split(" = ", 1)
                   for line in out.stderr.splitlines() if " = " in line)
    line = next(s for s in out.stdout.splitlines() if s.startswith("cpu threads:"))
    return line, runtime


def test_cli_threads_sleep_when_idle_by_default_and_the_users_settings_win():
    line, runtime = _info()
    assert runtime["GOMP_SPINCOUNT"] == "0"  # the runtime got the policy before it loaded
    assert line.endswith("idle threads wait as OMP_WAIT_POLICY=PASSIVE (set by landscape)")
    assert line.startswith(f"cpu threads: {runtime['OMP_NUM_THREADS']} (one per core);")

    line, runtime = _info(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert runtime["GOMP_SPINCOUNT"] == "30000000000" and runtime["OMP_NUM_THREADS"] == "1"
    assert line == "cpu threads: 1 (OMP_NUM_THREADS); idle threads wait as OMP_WAIT_POLICY=ACTIVE " \
                   "(from the environment)"


def test_thread_defaults_set_only_what_the_user_left_unset(monkeypatch):
    """A wait policy, a spin count or a block time chosen by the user is kept as it is."""
    for name in _THREAD_VARS:  # set, then removed: monkeypatch restores the environment after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert thread_defaults() == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_defaults() == {}  # already set: a child process keeps what it inherits
    for name, value in (("OMP_WAIT_POLICY", "active"), ("GOMP_SPINCOUNT", "10"), ("KMP_BLOCKTIME", "0")):
        for other in WAIT_VARIABLES:
            monkeypatch.delenv(other, raising=False)
        monkeypatch.setenv(name, value)
        assert thread_defaults() == {}
        assert {k: v for k, v in os.environ.items() if k in WAIT_VARIABLES} == {name: value}
