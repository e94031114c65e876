import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import cli

MLP = ["--model", "mlp", "--init", "xavier", "--samples", "64", "--grid", "-1:1:5", "--units", "4",
       "--anchors", "3"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result, sorted(p.name for p in Path(".").iterdir())


def test_slice_then_plot_end_to_end():
    res, _ = run(["slice", *MLP, "--bias-scale", "0.5", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == "s.nc"
    ds = landscape.load("s.nc")
    assert ds.attrs["space"] == "both"
    assert ds.loss.dims == ("alpha", "beta") and ds.activation.dims == ("unit", "anchor", "alpha")
    assert ds.attrs["bias_scale"] == 0.5 and ds.attrs["model"] == "mlp"
    assert ds.attrs["init"] == "xavier" and ds.attrs["state"] == "random"
    res, _ = run(["plot", "s.nc", "--out", "figs"])
    assert res.exit_code == 0, res.output
    pngs = res.stdout.split()
    assert [Path(p).name for p in pngs] == ["s_loss.png", "s_activation.png", "s_barriers.png"]
    for p in pngs:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_output_name_and_one_dimensional_loss():
    res, files = run(["slice", *MLP, "--space", "loss", "--dims", "1"])
    assert res.exit_code == 0, res.output
    name = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"slice_mlp_xavier_\d{8}-\d{6}\.nc", name)
    assert files == [name]


def test_info_lists_models():
    res = CliRunner().invoke(cli, ["info"])
    assert res.exit_code == 0
    for word in ("resnet18-noskip", "xavier", "digits", "filter"):
        assert word in res.stdout


def test_every_command_has_help():
    commands = sorted(cli.commands)
    assert {"slice", "hessian", "maxact", "tsne", "train", "sweep", "compare", "plot",
            "info"} <= set(commands)
    for command in ([], *([c] for c in commands)):
        res = CliRunner().invoke(cli, [*command, "--help"])
        assert res.exit_code == 0, (command, res.output)
        usage = res.stdout.splitlines()[0]
        assert usage.startswith("Usage: ") and usage.split()[2:2 + len(command)] == command
        assert "--help" in res.stdout


def test_slice_of_a_batchnorm_model_both_spaces_share_statistics_and_leave_it_alone(monkeypatch):
    from landscape import models
    from landscape.view import model_view

    built = []
    build = models.build_model

    def keep(*args, **kwargs):
        model = build(*args, **kwargs)
        built.append((model, {k: v.clone() for k, v in model.state_dict().items()},
                      {n: m.training for n, m in model.named_modules()}))
        return model

    monkeypatch.setattr(models, "build_model", keep)
    res, _ = run(["slice", "--model", "resnet18", "--in-shape", "3x8x8", "--init", "xavier",
                  "--samples", "16", "--grid", "-1:1:3", "--dims", "1", "--units", "2",
                  "--anchors", "1", "--bn", "auto", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    ((model, state, flags),) = built
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    ds = landscape.load("s.nc")
    config = json.loads(ds.attrs["config"])
    assert ds.attrs["bn"] == "recompute" == config["loss"]["bn"] == config["input"]["bn"]
    # Both parts are the network with statistics recomputed on these 16 samples.
    x, y = landscape.load_dataset("digits", n=16, in_shape=(3, 8, 8), seed=0)
    view = model_view(model, "recompute", x)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(view(x), y).item()
        unit = landscape.unit_activations(view, "avgpool", x[:1], [0, 1])[0].numpy()
    assert float(ds.loss.sel(alpha=0)) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(ds.activation.sel(alpha=0, anchor=0).values, unit, rtol=1e-3)
    with torch.no_grad():  # the stored 0/1 statistics give another network
        stored = landscape.unit_activations(model_view(model, "eval"), "avgpool", x[:1], [0, 1])
    assert not np.allclose(stored[0].numpy(), unit, rtol=1e-2)
    res, files = run(["slice", *MLP, "--bn", "batch", "--out", "b.nc"])
    assert res.exit_code != 0 and "bn: 'batch' does not apply to the input space" in res.stderr
    assert "b.nc" not in files


def test_checkpoint_run_takes_its_recipe_from_the_meta():
    train = ["train", "--model", "mlp", "--init", "kaiming", "--bias-scale", "0", "--width", "8",
             "--activation", "tanh", "--seed", "3", "--samples", "64", "--test-samples", "32",
             "--epochs", "1", "--out", "k.pt"]
    res, _ = run(train)
    assert res.exit_code == 0, res.output
    base = ["slice", "--model", "mlp", "--checkpoint", "k.pt", "--samples", "32", "--grid",
            "-1:1:3", "--dims", "1", "--space", "loss"]
    res, _ = run([*base, "--out", "a.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("a.nc")
    config = json.loads(ds.attrs["config"])
    assert (ds.attrs["init"], ds.attrs["bias_scale"], ds.attrs["seed"]) == ("kaiming", 0.0, 3)
    assert (config["width"], config["activation"], config["state"]) == (8, "tanh", "trained")
    assert json.loads(ds.attrs["overridden"]) == []
    res, _ = run([*base, "--init", "xavier", "--seed", "4", "--out", "b.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("b.nc")
    assert (ds.attrs["init"], ds.attrs["seed"]) == ("xavier", 4)
    assert json.loads(ds.attrs["overridden"]) == ["init", "seed"]


@pytest.fixture
def foreign_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "cnn.pt"
    torch.save(landscape.build_model("cnn").state_dict(), path)
    return str(path)


@pytest.mark.parametrize("args,message", [
    (["slice", "--model", "vgg99"], "model: unknown value 'vgg99'"),
    (["slice", *MLP, "--grid", "1:2"], "grid: expected start:stop:num"),
    (["slice", *MLP, "--dataset", "cifar10"], "needs --data-root"),
    (["slice", *MLP, "--dataset", "mnist", "--data-root", "/nonexistent/root"], "does not exist"),
    (["slice", *MLP, "--checkpoint", "CKPT"], "does not fit model 'mlp'"),
    (["slice", *MLP, "--directions", "sideways"], "directions: unknown value 'sideways'"),
    (["slice", *MLP, "--space", "moon"], "Invalid value for '--space'"),
    (["slice", *MLP, "--units", "500"], "units: layer has 64 units"),
    (["slice", *MLP, "--layer", "fc9"], "no module named 'fc9'"),
    (["plot", "missing.nc"], "no such file"),
    (["slice", *MLP, "--device", "tpu"], "device"),
])
def test_bad_input_is_one_line_no_traceback_no_file(foreign_checkpoint, args, message):
    args = [foreign_checkpoint if a == "CKPT" else a for a in args]
    res, files = run([*args, "--out", "x.nc"] if args[0] == "slice" else args)
    assert res.exit_code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("landscape: error:") and message in lines[0]
    assert "Traceback" not in res.output
    assert files == []


def test_existing_output_is_not_overwritten():
    Path("keep.nc").write_text("precious")
    res, _ = run(["slice", *MLP, "--out", "keep.nc"])
    assert res.exit_code != 0 and "exists" in res.stderr
    assert Path("keep.nc").read_text() == "precious"


def test_corrupt_result_file_for_plot():
    Path("bad.nc").write_text("not netcdf")
    res, files = run(["plot", "bad.nc"])
    assert res.exit_code != 0
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("landscape: error: 'bad.nc' is not a readable netCDF file")
    assert files == ["bad.nc"]


HESSIAN = ["hessian", "--model", "mlp", "--init", "xavier", "--width", "8", "--in-shape", "1x3x3",
           "--samples", "64"]


def test_hessian_loss_and_input_end_to_end():
    res, _ = run([*HESSIAN, "--top-k", "2", "--bottom-k", "1", "--density", "--trace",
                  "--method", "lanczos", "--out", "h.nc"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == "h.nc"
    ds = landscape.load("h.nc", kind="hessian")
    assert list(ds.which.values) == ["top", "top", "bottom"]
    assert (ds.eigenvalue.diff("eig") <= 0).all()
    assert float(ds.trace_stderr) > 0
    # The negative mass is the returned density's mass below -zero_eps.
    lam, dens, eps = ds.lam.values, ds.density.values, ds.attrs["zero_eps"]
    below = lam < -eps
    assert float(ds.negative_mass) == pytest.approx(
        float(((dens[below][1:] + dens[below][:-1]) * np.diff(lam[below])).sum() / 2), abs=0.01)
    assert float(ds.negative_mass + ds.zero_mass + ds.positive_mass) == pytest.approx(1.0)
    res, _ = run([*HESSIAN, "--space", "input", "--units", "3", "--anchors", "2",
                  "--activation", "tanh", "--out", "hi.nc"])
    assert res.exit_code == 0, res.output
    di = landscape.load("hi.nc", kind="input_hessian")
    assert di.eigenvalue.dims == ("unit", "anchor", "eig") and di.sizes["unit"] == 3
    res, _ = run(["plot", "h.nc"])
    assert res.exit_code == 0 and res.stdout.split() == [str(Path("h_figures", "h_spectrum.png"))]


def test_slice_along_hessian_directions():
    res, _ = run(["slice", *MLP, "--space", "loss", "--directions", "hessian", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("s.nc")
    assert ds.attrs["directions"] == "hessian"
    assert ds.direction_norm.values == pytest.approx([1.0, 1.0], rel=1e-5)


@pytest.mark.parametrize("args,message", [
    (["--top-k", "-1"], "top-k: must be >= 0"),
    (["--top-k", "0"], "nothing to compute"),
    (["--space", "input", "--layer", "nope"], "no module named 'nope'"),
    (["--space", "input", "--bn", "batch"], "bn: 'batch' does not apply to the input space"),
    (["--batch-size", "0"], "batch-size: must be >= 1"),
])
def test_hessian_bad_input(args, message):
    res, files = run([*HESSIAN, *args, "--out", "x.nc"])
    assert res.exit_code != 0
    (line,) = res.stderr.strip().splitlines()
    assert message in line and files == []
