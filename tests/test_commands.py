"""The command layer: the registry, one analysis as one file, Setup, and the
default layer of a model that names none."""

import json
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import landscape
from landscape.cli import cli
from landscape.commands.analysis import Analysis, command
from landscape.commands.options import MODEL_OPTIONS
from landscape.commands.registry import ANALYSES
from landscape.commands.setup import Setup, resolve_recipe
from landscape.models import inferred_layer
from landscape.summary import headline_variables


def _weight_norms(opts: dict):
    """A whole analysis in a few lines: each parameter tensor's norm."""
    import xarray as xr

    setup = Setup("norms", opts)
    names = [n for n, _ in setup.model.named_parameters()]
    norms = [float(p.detach().norm()) for _, p in setup.model.named_parameters()]
    ds = xr.Dataset({"norm": ("parameter", norms)}, coords={"parameter": names},
                    attrs={"kind": "norms", "model": opts["model_name"], "init": opts["init"],
                           "seed": opts["seed"], "largest_norm": max(norms)})
    return ds, setup


NORMS = Analysis("norms", _weight_norms, tuple(MODEL_OPTIONS),
                 lambda ds: [f"largest norm {float(ds.norm.max()):.4f}"], headlines=("norm",),
                 help="Each parameter tensor's norm.")


def test_a_new_analysis_is_one_definition(tmp_path):
    out = tmp_path / "n.nc"
    res = CliRunner().invoke(command(NORMS), ["--model", "mlp", "--init", "xavier", "--seed", "2",
                                              "--samples", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    model = landscape.build_model("mlp", init="xavier", seed=2)
    expected = {n: float(p.detach().norm()) for n, p in model.named_parameters()}
    ds = landscape.load(out)
    assert dict(zip(ds.parameter.values, ds.norm.values)) == pytest.approx(expected, rel=1e-6)
    assert f"largest norm {max(expected.values()):.4f}" in res.output
    # provenance, headlines and figure kind come with it
    assert json.loads(ds.attrs["headlines"]) == ["norm"] and ds.attrs["figure"] == "norms"
    assert json.loads(ds.attrs["config"])["seed"] == 2
    assert set(headline_variables(ds)) == {"mean_norm"}
    assert float(headline_variables(ds)["mean_norm"]) == pytest.approx(np.mean(list(expected.values())))


def test_the_registry_is_the_command_line():
    assert list(ANALYSES) == ["slice", "hessian", "maxact", "tsne", "sae"]
    for name, entry in ANALYSES.items():
        assert cli.commands[name].params == list(entry.options)
        assert entry.figure == name
    assert ANALYSES["slice"].headlines and ANALYSES["sae"].headlines


def test_recipe_from_a_checkpoint_meta_and_overrides():
    opts = {"init": None, "bias_scale": 0.5, "seed": None, "width": None}
    overridden = resolve_recipe(opts, {"init": "kaiming", "bias_scale": 0.0, "seed": 7, "width": 12})
    assert (opts["init"], opts["bias_scale"], opts["seed"], opts["width"]) == ("kaiming", 0.5, 7, 12)
    assert overridden == ["bias_scale"]


def test_setup_refuses_an_existing_output_before_building_anything(tmp_path):
    out = tmp_path / "r.nc"
    out.write_text("keep")
    opts = ANALYSES["slice"].parse(["--model", "mlp", "--out", str(out)])
    with pytest.raises(landscape.LandscapeError, match="exists"):
        Setup("slice", opts)
    assert out.read_text() == "keep"


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.drop = nn.Dropout(0.0)
        self.flat = nn.Flatten()
        self.head = nn.Linear(3, 10)

    def forward(self, x):
        return self.head(self.drop(self.flat(self.body(x))))


def test_the_inferred_layer_is_the_one_feeding_the_head():
    assert inferred_layer(_Net()) == ("body.2", "head")
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Dropout(), nn.Linear(8, 3))
    assert inferred_layer(seq) == ("2", "4")
    with pytest.raises(landscape.LandscapeError, match="no Linear or Conv head"):
        inferred_layer(nn.Sequential(nn.ReLU()))
    # its units are the pooled map's channels, as the model's own default would give
    x = torch.randn(5, 1, 4, 4)
    net = _Net()
    expected = net.body(x).flatten(1)
    torch.testing.assert_close(landscape.unit_activations(net, None, x), expected)


def test_a_users_sequential_gets_a_default_layer_and_is_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(textwrap.dedent("""
        from torch import nn

        def make_net():
            return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))
    """))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(24, 1, 4, 4)).astype("float32"),
             y=rng.integers(0, 3, 24))
    res = CliRunner().invoke(cli, ["slice", "--model", "mynet.py:make_net", "--dataset",
                                   "npz:data.npz", "--space", "input", "--units", "2",
                                   "--anchors", "2", "--grid", "-1:1:5", "--samples", "24",
                                   "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    assert "using '2', the module before its head '3'" in res.output
    assert landscape.load(tmp_path / "s.nc").attrs["layer"] == "2"


def test_every_built_in_dataset_is_named_in_the_dataset_help():
    from landscape.data import DATASETS

    for name in ("train", "slice", "sae"):
        (param,) = [p for p in cli.commands[name].params if p.name == "dataset"]
        words = param.help.replace(",", " ").replace(".", " ").split()
        missing = [dataset for dataset in DATASETS if dataset not in words]
        assert not missing, (name, missing)
