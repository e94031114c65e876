"""Your own network and data from the command line: a file-defined model on an
npz file through slice, hessian, maxact and tsne, checked against values
computed by hand; user model specs, npz and image folders, and their errors."""

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import landscape
from landscape import LandscapeError, build_model, load_dataset
from landscape.cli import cli
from landscape.hessian import hessian_spectrum
from landscape.train import save_checkpoint

NET = '''
import torch
from torch import nn


def build(hidden=8, classes=3):
    """A small classifier of 6 features."""
    return nn.Sequential(nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, classes))


def not_a_module():
    return 42
'''
ARGS = '{"hidden": 5}'


@pytest.fixture
def project(tmp_path, monkeypatch):
    """net.py and data.npz (40 samples, 3 classes) in the working folder."""
    monkeypatch.chdir(tmp_path)
    Path("net.py").write_text(NET)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    np.savez("data.npz", x=x, y=y)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def common(*extra):
    return ["--model", "net.py:build", "--model-args", ARGS, "--dataset", "npz:data.npz",
            "--samples", "32", "--layer", "1", *extra]


def reference():
    """The same model and data as the command line builds (seed 0)."""
    model = build_model("net.py:build", model_args=json.loads(ARGS), seed=0)
    x, y = load_dataset("npz:data.npz", n=32, seed=0)
    return model, x, y


def test_file_model_on_npz_through_every_command(project):
    model, x, y = reference()
    sha = hashlib.sha256(Path("net.py").read_bytes()).hexdigest()

    res = invoke("slice", *common("--units", "3", "--anchors", "2", "--grid", "-1:1:3",
                                  "--out", "s.nc"))
    assert res.exit_code == 0, res.output
    ds = landscape.load("s.nc")
    assert ds.attrs["model_spec"] == "net.py:build" and ds.attrs["model_sha256"] == sha
    assert json.loads(ds.attrs["model_args"]) == {"hidden": 5}
    with torch.no_grad():
        centre = F.cross_entropy(model(x), y)
        acts = torch.tanh(model[0](x))
    assert float(ds.loss.sel(alpha=0, beta=0)) == pytest.approx(float(centre), rel=1e-5)
    np.testing.assert_allclose(ds.activation.sel(alpha=0).transpose("anchor", "unit").values,
                               acts[:2, :3].numpy(), rtol=1e-5)

    res = invoke("hessian", *common("--top-k", "1", "--bottom-k", "1", "--tol", "1e-6",
                                    "--out", "h.nc"))
    assert res.exit_code == 0, res.output
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().double().reshape(-1) for p in model.parameters()])
    net64 = build_model("net.py:build", model_args={"hidden": 5}).double()

    def loss(theta):
        parts = dict(zip(names, theta.split([s.numel() for s in shapes])))
        params = {n: parts[n].view(s) for n, s in zip(names, shapes)}
        return F.cross_entropy(torch.func.functional_call(net64, params, (x.double(),)), y)

    truth = torch.linalg.eigvalsh(torch.func.hessian(loss)(flat))
    got = landscape.load("h.nc").eigenvalue.values
    np.testing.assert_allclose(got, [truth[-1].item(), truth[0].item()], rtol=2e-3, atol=1e-5)

    res = invoke("maxact", *common("--units", "2", "--top-k", "3", "--restarts", "2",
                                   "--steps", "5", "--out", "m.nc"))
    assert res.exit_code == 0, res.output
    ma = landscape.load("m.nc")
    for u in range(2):
        np.testing.assert_array_equal(ma.topk_index.sel(unit=u).values,
                                      np.argsort(-acts[:, u].numpy())[:3])

    res = invoke("tsne", *common("--units", "2", "--perplexity", "5", "--n-iter", "50",
                                 "--pca-dims", "4", "--out", "t.nc"))
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(landscape.load("t.nc").activation.transpose("sample", "unit").values,
                               acts[:, :2].numpy(), rtol=1e-5)


def test_checkpoint_loads_into_a_file_model(project):
    model, x, y = reference()
    with torch.no_grad():
        model[2].bias.copy_(torch.tensor([3.0, -1.0, 0.5]))
        expected = F.cross_entropy(model(x), y)
    save_checkpoint("w.pt", model, {"model": "net.py:build"})
    res = invoke("slice", *common("--space", "loss", "--dims", "1", "--grid", "-1:1:3",
                                  "--checkpoint", "w.pt", "--out", "s.nc"))
    assert res.exit_code == 0, res.output
    assert float(landscape.load("s.nc").loss.sel(alpha=0)) == pytest.approx(float(expected),
                                                                            rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuch.py:build"], "model: no such file 'nosuch.py'"),
    (["--model", "net.py:nope"], "model: 'net.py' has no function 'nope' (its functions: build, "
                                 "not_a_module)"),
    (["--model", "net.py:not_a_module"], "returned int, not a torch.nn.Module"),
    (["--model", "net.py:build", "--model-args", "{bad"], "model-args: not valid JSON"),
    (["--model", "net.py:build", "--model-args", "[1]"], "model-args: expected a JSON object"),
    (["--model", "net.py:build", "--model-args", '{"depth": 2}'],
     "failed (TypeError: build() got an unexpected keyword argument 'depth')"),
    (["--model", "nosuch_package.module:f"], "cannot import module 'nosuch_package.module'"),
    (["--model", "net.py:build", "--width", "3"], "options width belong to the registered"),
    (["--model", "mlp", "--model-args", ARGS], "model-args: apply to user models"),
    (["--dataset", "npz:missing.npz"], "dataset npz:missing.npz: no such file"),
    (["--dataset", "csv:data.csv"], "dataset: unknown value 'csv:data.csv'"),
])
def test_bad_specs_are_one_clear_line(project, args, message):
    base = ["slice", "--model", "net.py:build", "--dataset", "npz:data.npz", "--samples", "8",
            "--space", "loss", "--dims", "1", "--grid", "-1:1:3", "--out", "s.nc"]
    res = invoke(*base, *args)
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("landscape: error: "), res.stderr
    assert message in lines[0]
    assert not Path("s.nc").exists()


def test_package_module_factory(project, monkeypatch):
    Path("mypkg").mkdir()
    Path("mypkg/__init__.py").write_text("")
    Path("mypkg/nets.py").write_text(NET)
    monkeypatch.syspath_prepend(str(project))
    model = build_model("mypkg.nets:build", model_args={"hidden": 4}, seed=1)
    again = build_model("mypkg.nets:build", model_args={"hidden": 4}, seed=1)
    assert model[0].weight.shape == (4, 6)
    assert torch.equal(model[0].weight, again[0].weight)  # seeded
    assert model.model_sha256 == hashlib.sha256(Path("mypkg/nets.py").read_bytes()).hexdigest()


def test_npz_files(project):
    x, y = load_dataset("npz:data.npz")
    assert x.shape == (40, 6) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), np.load("data.npz")["x"])
    sub, _ = load_dataset("npz:data.npz", n=5, seed=3)
    idx = np.sort(np.random.default_rng(3).permutation(40)[:5])
    np.testing.assert_array_equal(sub.numpy(), np.load("data.npz")["x"][idx])
    np.savez("unlabelled.npz", x=np.arange(12).reshape(3, 4))
    tokens, none = load_dataset("npz:unlabelled.npz")
    assert none is None and tokens.dtype == torch.int64
    with pytest.raises(LandscapeError, match="no array 'x_test'.*needs arrays x_test, y_test"):
        load_dataset("npz:data.npz", split="test")
    np.savez("short.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(LandscapeError, match="2 'y' for 3 'x'"):
        load_dataset("npz:short.npz")
    Path("junk.npz").write_text("not a zip")
    with pytest.raises(LandscapeError, match="cannot be read as an .npz file"):
        load_dataset("npz:junk.npz")


def test_image_folder(tmp_path):
    from PIL import Image

    for label, grey in (("a", 50), ("b", 200)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (7, 5), (grey, grey, grey)).save(tmp_path / label / f"{i}.png")
    x, y = load_dataset(f"folder:{tmp_path}", in_shape=(1, 4, 4))
    assert x.shape == (6, 1, 4, 4)
    np.testing.assert_array_equal(y.numpy(), [0, 0, 0, 1, 1, 1])
    # Two constant greys standardised by the folder's own statistics: -1 and +1.
    np.testing.assert_allclose(x[:3].numpy(), -1, atol=1e-5)
    np.testing.assert_allclose(x[3:].numpy(), 1, atol=1e-5)
    colour, _ = load_dataset(f"folder:{tmp_path}", in_shape=(3, 2, 3), n=2, seed=0)
    assert colour.shape == (2, 3, 2, 3)
    with pytest.raises(LandscapeError, match="give --in-shape"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(LandscapeError, match="no test split"):
        load_dataset(f"folder:{tmp_path}", split="test", in_shape=(1, 4, 4))


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_results_follow_the_umask(project, mask, mode):
    model, x, y = reference()
    old = os.umask(mask)
    try:
        ds = hessian_spectrum(model, x, y, top_k=1, max_steps=5)
        landscape.save(ds, "r.nc")
        save_checkpoint("c.pt", model, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(Path("r.nc").stat().st_mode) == mode
    assert stat.S_IMODE(Path("c.pt").stat().st_mode) == mode


def test_sweep_validates_every_value_before_any_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("sweep", "slice", "--model", "mlp", "--init", "xavier,nosuch", "--bias-scale",
                 "0", "--space", "loss", "--dims", "1", "--grid", "-1:1:3", "--samples", "8",
                 "--out-dir", "out")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "init 'nosuch'" in lines[0] and "unknown value 'nosuch'" in lines[0]
    assert not Path("out").exists()


@pytest.mark.parametrize("command", [["slice"], ["hessian", "--space", "input"]])
def test_more_anchors_than_samples_is_refused(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    res = invoke(*command, "--model", "mlp", "--samples", "4", "--anchors", "5", "--out", "r.nc")
    assert res.exit_code == 1
    assert "anchors: 5 anchors are taken from the data, but --samples is 4" in res.stderr
    assert not Path("r.nc").exists()


class Recorder:
    """A progress factory that remembers every bar and its updates."""

    def __init__(self):
        self.bars = []

    def __call__(self, total, desc):
        bar = {"total": total, "desc": desc, "count": 0, "closed": False}
        self.bars.append(bar)

        class Bar:
            def update(self, n=1):
                bar["count"] += n

            def close(self):
                bar["closed"] = True

        return Bar()


def test_hessian_and_tsne_report_progress(project):
    from landscape import tsne_heatmaps

    model, x, y = reference()
    rec = Recorder()
    ds = hessian_spectrum(model, x, y, top_k=1, trace=True, trace_probes=6, progress=rec)
    assert rec.bars[0]["count"] == int(ds.n_hvp) > 6 and rec.bars[0]["closed"]
    rec = Recorder()
    tsne_heatmaps(model, "1", 2, x, y, perplexity=5, n_iter=50, pca_dims=4, progress=rec)
    assert rec.bars[0]["total"] == 300 and rec.bars[0]["count"] == 300 and rec.bars[0]["closed"]


def test_info_names_your_own_models_data_and_losses():
    res = invoke("info")
    assert res.exit_code == 0
    for text in ("PATH.py:FUNCTION", "npz:FILE", "folder:DIR", "losses: cross-entropy, mse"):
        assert text in res.stdout
