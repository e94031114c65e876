"""Sweeps on a 2-worker Dask cluster: expansion, skipping finished parts, failures,
a killed worker, and the combined Dataset."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from distributed.diagnostics.plugin import WorkerPlugin

import landscape
from landscape.cli import cli
from landscape.sweep import combine, expand_tasks, parse_list, parse_seeds, task_name

POINTS = ["--model", "mlp", "--init", "xavier,kaiming", "--bias-scale", "0,0.1", "--seeds", "0-1"]
SMALL = ["--grid", "-1:1:5", "--samples", "64", "--units", "4", "--anchors", "2", "--threads", "1"]
RAISES = task_name("mlp", "kaiming", 0.1, 1, "random")  # raises on its first attempt
KILLS = task_name("mlp", "xavier", 0.0, 1, "random")  # kills its worker on its first attempt


class FaultPlugin(WorkerPlugin):
    """Installed on every worker (restarted ones too): in folders named
    'interrupted', one task raises and another kills its worker process, each
    the first time only (a marker file remembers)."""

    name = "landscape-test-faults"

    def setup(self, worker):
        import dataclasses

        from landscape.commands.registry import ANALYSES

        original = ANALYSES["slice"]

        def faulty(opts):
            out = Path(opts["out"])
            if "interrupted" in str(out):
                marker = out.parent.parent / f"{out.name}.attempted"
                first = not marker.exists()
                marker.touch()
                if first and out.name == RAISES:
                    raise RuntimeError("injected failure")
                if first and out.name == KILLS:
                    os._exit(1)
            return original.run(opts)

        ANALYSES["slice"] = dataclasses.replace(original, run=faulty)


@pytest.fixture(scope="module")
def scheduler():
    """A 2-worker local cluster, reached through `--scheduler ADDRESS`."""
    from dask.distributed import Client, LocalCluster

    from landscape.sweep import QUIET_SCHEDULER, quiet_dask

    quiet_dask()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.CRITICAL,
                           scheduler_kwargs=QUIET_SCHEDULER)
    client = Client(cluster)
    client.register_plugin(FaultPlugin())
    yield cluster.scheduler_address
    client.close()
    cluster.close()


def sweep(*args):
    return CliRunner().invoke(cli, ["sweep", "slice", *POINTS, *SMALL, *args])


def stamps(folder: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.nc")}


def test_parse_lists():
    assert parse_list("0,0.1,1", float, "bias-scale") == [0.0, 0.1, 1.0]
    assert parse_list("xavier, kaiming") == ["xavier", "kaiming"]
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,7") == [0, 3, 7] and parse_seeds("0-1,5") == [0, 1, 5]
    with pytest.raises(landscape.LandscapeError, match=r"bias-scale: cannot read 'x' in '0,x' as a number"):
        parse_list("0,x", float, "bias-scale")
    for bad in ("", "0,,1", "1,1"):
        with pytest.raises(landscape.LandscapeError, match="bias-scale"):
            parse_list(bad, float, "bias-scale")
    for bad in ("a", "3-1", "0-x", "1,1", "-1"):
        with pytest.raises(landscape.LandscapeError, match="seeds"):
            parse_seeds(bad)


def test_tasks_use_the_analysis_parser(tmp_path):
    tasks = expand_tasks("slice", ["mlp"], ["xavier", "kaiming"], [0.0, 0.1], [0, 1], tmp_path,
                         args=["--grid", "-1:1:5", "--samples", "64"])
    assert len(tasks) == 8
    t = tasks[1]
    assert (t.model, t.init, t.bias_scale, t.seed, t.state) == ("mlp", "xavier", 0.0, 1, "random")
    assert Path(t.path) == tmp_path / "slice" / "mlp_xavier_b0_s1_random.nc"
    # Options given pass through; the others take the command's defaults.
    assert t.opts["grid"] == "-1:1:5" and t.opts["samples"] == 64 and t.opts["units"] == 16
    assert t.opts["seed"] == 1 and t.opts["bias_scale"] == 0.0 and t.opts["checkpoint"] is None
    with pytest.raises(landscape.LandscapeError, match="(?i)no such option"):
        expand_tasks("slice", ["mlp"], ["xavier"], [0.0], [0], tmp_path, args=["--gird", "x"])
    with pytest.raises(landscape.LandscapeError, match="unknown analysis"):
        expand_tasks("nope", ["mlp"], ["xavier"], [0.0], [0], tmp_path)


def test_trained_state_takes_a_checkpoint_per_point(tmp_path):
    from landscape.train import save_checkpoint

    for seed in (0, 1):
        model = landscape.build_model("mlp", init="xavier", seed=seed)
        save_checkpoint(tmp_path / f"mlp_xavier_s{seed}.pt", model, {"model": "mlp", "seed": seed})
    template = str(tmp_path / "{model}_{init}_s{seed}.pt")
    tasks = expand_tasks("slice", ["mlp"], ["xavier"], [0.0], [0, 1], tmp_path,
                         states=["random", "trained"], trained=template)
    assert [(t.seed, t.state) for t in tasks] == [(0, "random"), (0, "trained"), (1, "random"),
                                                  (1, "trained")]
    assert tasks[0].opts["checkpoint"] is None
    assert tasks[3].opts["checkpoint"] == str(tmp_path / "mlp_xavier_s1.pt")
    with pytest.raises(landscape.LandscapeError, match="no such checkpoint"):
        expand_tasks("slice", ["mlp"], ["kaiming"], [0.0], [0], tmp_path, states=["trained"],
                     trained=template)


def test_malformed_list_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["sweep", "slice", "--bias-scale", "0,x", "--out-dir", "runs"])
    assert res.exit_code != 0
    assert res.stderr.strip() == "landscape: error: bias-scale: cannot read 'x' in '0,x' as a number"
    assert not Path("runs").exists()
    res = CliRunner().invoke(cli, ["sweep", "slice", "--bias-scale", "0", "--seed", "3"])
    assert res.exit_code != 0 and "--seeds" in res.stderr


def test_interrupted_sweep_resumes_and_equals_an_uninterrupted_one(tmp_path, scheduler):
    # Uninterrupted, on a local cluster of its own (--workers 2).
    whole = tmp_path / "whole"
    res = sweep("--workers", "2", "--out-dir", str(whole))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(whole / "slice_sweep.nc")

    # Interrupted: one task raises, another kills its worker process.
    broken = tmp_path / "interrupted"
    res = sweep("--scheduler", scheduler, "--out-dir", str(broken))
    assert res.exit_code != 0
    assert f"task slice/{RAISES} failed: RuntimeError: injected failure" in res.stderr
    parts = broken / "slice"
    assert RAISES not in stamps(parts) and len(stamps(parts)) in (6, 7)  # the killed one may be lost
    first = landscape.load(broken / "slice_sweep.nc")
    failed = [f["task"] for f in landscape.sweep.failures_of(first)]
    assert f"slice/{RAISES}" in failed and len(failed) == 8 - len(stamps(parts))
    point = dict(model="mlp", init="kaiming", bias_scale=0.1, seed=1, state="random")
    assert np.isnan(first.loss.sel(point)).all()
    assert np.isfinite(first.loss.sel(point | {"seed": 0})).all()

    # Run again: finished parts are kept as they are, the rest is computed.
    before = stamps(parts)
    res = sweep("--scheduler", scheduler, "--out-dir", str(broken))
    assert res.exit_code == 0, res.output
    assert f"{8 - len(before)} ran, {len(before)} done before, 0 failed" in res.stdout
    after = stamps(parts)
    assert len(after) == 8 and {k: after[k] for k in before} == before

    a = landscape.load(whole / "slice_sweep.nc")
    b = landscape.load(res.stdout.strip().splitlines()[-1])
    assert a.attrs["kind"] == b.attrs["kind"] == "sweep" and a.attrs["analysis"] == "slice"
    assert b.attrs["failures"] == "[]" and a.attrs["tasks"] == b.attrs["tasks"]
    for ds in (a, b):
        ds.attrs = {k: v for k, v in ds.attrs.items() if k not in ("created", "config")}
    xr.testing.assert_allclose(a, b)
    assert a.attrs == b.attrs
    assert dict(a.sizes) | {} == dict(b.sizes)
    assert a.loss.dims[:5] == ("model", "init", "bias_scale", "seed", "state")
    assert a.loss_frac_quasi_convex.dims == ("model", "init", "bias_scale", "seed", "state")


def _sweep_bench():
    """bench/sweep_bench.py, whose scale scenario this test runs at small size."""
    import importlib.util

    path = Path(__file__).parent.parent / "bench" / "sweep_bench.py"
    spec = importlib.util.spec_from_file_location("sweep_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_worker_killed_mid_sweep_loses_nothing_and_writes_nothing_twice(tmp_path, scheduler):
    # 20 tiny tasks on 2 workers; the worker that writes the 10th file dies right after
    # writing it, before its answer reaches the scheduler, which runs that task again.
    from dask.distributed import Client

    with Client(scheduler) as client:
        report = _sweep_bench().scale_sweep(20, tmp_path, client)
    assert report["killed"] and report["failures"] == {}
    assert report["files"] == 20 and report["never_written"] == []
    assert sorted(report["writes"].values()) == [1] * 20 and report["written_twice"] == []
    assert report["identical"]  # the combined sweep equals the serial run's


def test_combine_single_results_compare_and_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    common = ["--model", "mlp", "--grid", "-1:1:3", "--samples", "32", "--units", "2", "--anchors", "2"]
    for init, bias, seed in (("xavier", 0.0, 0), ("xavier", 0.0, 1), ("xavier", 0.5, 0),
                             ("xavier", 0.5, 1)):
        res = run(cli, ["slice", *common, "--init", init, "--bias-scale", str(bias), "--seed", str(seed),
                        "--out", f"{bias}_{seed}.nc"])
        assert res.exit_code == 0, res.output
    files = sorted(str(p) for p in Path(".").glob("*.nc"))
    ds = combine(files)
    assert ds.attrs["kind"] == "sweep" and dict(ds.sizes)["bias_scale"] == 2
    expected = landscape.load("0.5_1.nc").attrs["activation_frac_either"]
    assert float(ds.activation_frac_either.sel(bias_scale=0.5, seed=1).squeeze()) == expected
    res = run(cli, ["compare", *files, "--by", "bias_scale", "--out", "cmp"])
    assert res.exit_code == 0, res.output
    assert "activation_frac_either" in res.stdout and " ± " in res.stdout
    assert res.stdout.strip().splitlines()[-1] == str(Path("cmp") / "compare_convexity.png")
    landscape.save(ds, "sweep.nc")
    res = run(cli, ["plot", "sweep.nc"])
    assert res.exit_code == 0, res.output
    assert Path("sweep_figures", "sweep_convexity.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(landscape.LandscapeError, match="same point"):
        combine([files[0], files[0]])


def test_retraining_into_the_same_path_makes_a_new_task(tmp_path):
    from landscape.sweep import _is_done, file_fingerprint
    from landscape.train import save_checkpoint

    ckpt = tmp_path / "mlp.pt"
    meta = {"model": "mlp", "init": "xavier", "seed": 0}
    save_checkpoint(ckpt, landscape.build_model("mlp", init="xavier", seed=0), meta)
    (task,) = expand_tasks("slice", ["mlp"], ["xavier"], [0.0], [0], tmp_path, states=["trained"],
                           trained=str(ckpt))
    Path(task.path).parent.mkdir(parents=True)
    landscape.save(xr.Dataset(attrs={"kind": "slice", "sweep_task": task.identity()}), task.path)
    assert _is_done(task)
    first = file_fingerprint(ckpt)
    # Retrained (other weights, same size) into the same path: the old part is stale.
    save_checkpoint(ckpt, landscape.build_model("mlp", init="xavier", seed=1), meta)
    assert file_fingerprint(ckpt) != first and not _is_done(task)
    assert file_fingerprint(tmp_path / "absent.pt") == "missing"


def test_constant_fractions_follow_into_sweeps_and_compare(tmp_path):
    from landscape.convexity import add_scores
    from landscape.summary import compare_table, headline_variables

    alpha = np.linspace(-1, 1, 5)
    shapes = {"dead": np.zeros(5), "bowl": alpha ** 2, "hill": -alpha ** 2, "wave": np.sin(6 * alpha)}
    paths = []
    # bias 0: 2 of 4 curves constant; bias 1: 1 of 4; the rest one bowl, one hill, one wave.
    for bias, names in ((0.0, ["dead", "dead", "bowl", "hill"]), (1.0, ["dead", "bowl", "hill", "wave"])):
        act = xr.DataArray(np.array([shapes[n] for n in names]), dims=("unit", "alpha"),
                           coords={"alpha": alpha})
        ds = add_scores(xr.Dataset({"activation": act}), "activation", "alpha")
        ds.attrs.update(kind="slice", model="mlp", init="xavier", bias_scale=bias, seed=0)
        paths.append(landscape.save(ds, tmp_path / f"b{bias}.nc"))
    sweep = combine(paths)
    assert sweep.activation_frac_constant.squeeze().values.tolist() == [0.5, 0.25]
    assert sweep.activation_frac_quasi_convex.squeeze().values.tolist() == [0.5, 1 / 3]
    names = list(headline_variables(sweep))
    assert names.index("activation_frac_constant") == names.index("activation_frac_either") + 1
    lines = compare_table(sweep, "bias_scale")
    row = lines[lines.index(next(x for x in lines if x.startswith("activation_frac_constant"))) + 2]
    assert row.split()[-2:] == ["0.5", "0.25"]
