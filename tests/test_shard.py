"""One slice's grid points sharded over a 2-worker Dask cluster: identical to a
single-process run, loss and input space, 1-D and 2-D, and still identical and
complete when a worker process dies mid-surface."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from click.testing import CliRunner
from distributed.diagnostics.plugin import WorkerPlugin
from torch import nn

import landscape
from landscape.cli import cli
from landscape.slicing import input_slice, loss_slice
from landscape.sweep.shard import parse_scheduler, task_ranges


class KillOnce(WorkerPlugin):
    """On every worker (restarted ones too): the first task that evaluates grid
    point ``at`` after point 0 (mid-surface) while ``folder/armed`` exists kills its
    own worker process (the marker is renamed to ``fired`` first: once only)."""

    name = "landscape-test-kill-once"

    def __init__(self, folder: str, at: int):
        self.folder, self.at = folder, at

    def setup(self, worker):
        import landscape.sweep.shard as shard

        original, folder, at = shard._evaluate, Path(self.folder), self.at

        def dying(token, blob, ranges):
            if ranges[0][0] > 0 and any(start <= at < stop for start, stop in ranges):
                try:
                    os.rename(folder / "armed", folder / "fired")
                except FileNotFoundError:
                    pass
                else:
                    os._exit(1)
            return original(token, blob, ranges)

        shard._evaluate = dying


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local cluster of 2 single-threaded worker processes, shared by the module;
    yields (scheduler address, folder of the kill marker)."""
    from dask.distributed import Client, LocalCluster

    from landscape.sweep import QUIET_SCHEDULER, quiet_dask

    quiet_dask()
    folder = tmp_path_factory.mktemp("kill")
    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.CRITICAL, scheduler_kwargs=QUIET_SCHEDULER)
    client = Client(local)
    # Point 30 of the surfaces below (7 x 7 points in chunks of 4, 8 tasks): task 5.
    client.register_plugin(KillOnce(str(folder), at=30))
    yield local.scheduler_address, folder
    client.close()
    local.close()


def _data(name):
    model = landscape.build_model(name, init="xavier", bias_scale=0.1, seed=0)
    x, y = landscape.load_dataset("digits", n=48, seed=0, in_shape=model.in_shape)
    return model, x, y


def _same(a: xr.Dataset, b: xr.Dataset, names) -> None:
    for name in names:
        np.testing.assert_array_equal(a[name].values, b[name].values)  # max diff 0
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


@pytest.mark.parametrize("name, dims", [("mlp", 2), ("cnn", 1)])
def test_sharded_loss_slice_equals_one_process(cluster, name, dims):
    # mlp: the vmap engine (chunks of points per batched call); cnn: the loop engine.
    model, x, y = _data(name)
    kw = dict(dims=dims, grid="-1:1:7", seed=3, chunk_size=4, batch_size=32)
    one = loss_slice(model, x, y, **kw)
    sharded = loss_slice(model, x, y, scheduler=cluster[0], **kw)
    assert one.attrs["engine"] == ("vmap" if name == "mlp" else "loop")
    _same(one, sharded, ["loss", "accuracy"])
    assert np.ptp(one.loss.values) > 0.01  # a surface, not a constant


def test_sharded_slice_of_a_batchnorm_network_under_both_modes_equals_one_process(cluster):
    # Both BatchNorm modes, the default for a BatchNorm network: each mode's grid is sharded.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(144, 10))
    x, y = landscape.load_dataset("digits", n=16, seed=0, in_shape=(1, 8, 8))
    kw = dict(dims=1, grid="-1:1:5", seed=3, chunk_size=2, batch_size=8, bn=("recompute", "batch"))
    from dask.distributed import Client, get_task_stream

    one = loss_slice(model, x, y, **kw)
    with Client(cluster[0]) as client, get_task_stream(client) as tasks:
        sharded = loss_slice(model, x, y, scheduler=cluster[0], **kw)
    assert list(one.bn.values) == ["recompute", "batch"]
    assert len(tasks.data) >= 2 * 2  # each mode's 5 points went out in chunks of 2
    _same(one, sharded, ["loss", "accuracy"])


@pytest.mark.parametrize("dims", [1, 2])
def test_sharded_input_slice_equals_one_process(cluster, dims):
    model, x, _ = _data("cnn")
    kw = dict(dims=dims, grid="-1:1:5", seed=2, batch_size=7, data=x)
    one = input_slice(model, "conv2", 4, x[:3], **kw)
    sharded = input_slice(model, "conv2", 4, x[:3], scheduler=cluster[0], **kw)
    _same(one, sharded, ["activation"])


def test_a_worker_killed_mid_loss_surface_changes_nothing(cluster):
    model, x, y = _data("mlp")
    kw = dict(dims=2, grid="-1:1:7", seed=5, chunk_size=4, batch_size=16)
    one = loss_slice(model, x, y, **kw)
    (cluster[1] / "armed").touch()
    sharded = loss_slice(model, x, y, scheduler=cluster[0], **kw)
    assert (cluster[1] / "fired").exists() and not (cluster[1] / "armed").exists()  # it died
    (cluster[1] / "fired").unlink()
    _same(one, sharded, ["loss", "accuracy"])


def test_a_worker_killed_mid_input_surface_changes_nothing(cluster, tmp_path, monkeypatch):
    address, folder = cluster
    monkeypatch.chdir(tmp_path)
    # The loss surface is one chunk (one task); the input surface (2 anchors x 49 points in
    # batches of 4) is 8 tasks, of which the fifth kills its worker.
    args = ["slice", "--model", "mlp", "--init", "xavier", "--bias-scale", "0.1", "--space", "both",
            "--dims", "2", "--grid", "-1:1:7", "--samples", "48", "--units", "3", "--anchors", "2",
            "--batch-size", "4", "--device", "cpu"]
    res = CliRunner().invoke(cli, [*args, "--out", "one.nc"])
    assert res.exit_code == 0, res.output
    (folder / "armed").touch()
    res = CliRunner().invoke(cli, [*args, "--scheduler", address, "--out", "sharded.nc"])
    assert res.exit_code == 0, res.output
    assert (folder / "fired").exists() and not (folder / "armed").exists()  # a worker died
    (folder / "fired").unlink()
    assert res.stdout.strip().splitlines()[-1] == "sharded.nc"
    one, sharded = landscape.load("one.nc"), landscape.load("sharded.nc")
    _same(one, sharded, ["loss", "accuracy", "activation"])
    assert sharded.attrs["scheduler"] == address
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["one.nc", "sharded.nc"]  # nothing else


def test_chunks_are_kept_whole_and_in_order():
    ranges = [(s, min(s + 4, 49)) for s in range(0, 49, 4)]
    for tasks in (1, 3, 5, 13, 100):
        runs = task_ranges(ranges, tasks)
        assert [r for run in runs for r in run] == ranges
        assert len(runs) == min(tasks, len(ranges))
        assert max(map(len, runs)) - min(map(len, runs)) <= 1


def test_bad_scheduler_is_one_line_and_no_file(tmp_path):
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "local:x", "local", " "):
        res = CliRunner().invoke(cli, ["slice", "--model", "mlp", "--space", "loss", "--grid",
                                       "-1:1:3", "--samples", "8", "--scheduler", bad,
                                       "--out", str(tmp_path / "x.nc")])
        assert res.exit_code != 0
        assert res.stderr.strip().startswith("landscape: error: scheduler:"), res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
