"""Training loop, checkpoints with metadata, and trajectory PCA directions."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import cli
from landscape.models import load_checkpoint
from landscape.train import evaluate, train
from landscape.trajectory import load_trajectory, trajectory_directions


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_one_epoch_on_digits_beats_chance_on_held_out_data():
    res = CliRunner().invoke(cli, ["train", "--model", "mlp", "--init", "kaiming", "--dataset", "digits",
                                   "--epochs", "1", "--seed", "3", "--out", "m.pt"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == "m.pt"
    # The checkpoint loads into a fresh model and scores well above chance (10%) on the test split.
    model = landscape.build_model("mlp", init="xavier", seed=99)
    meta = load_checkpoint(model, "m.pt")
    x, y = landscape.load_dataset("digits", split="test")
    _, accuracy = evaluate(model, x, y)
    assert accuracy > 0.5
    assert meta["test_accuracy"] == pytest.approx(accuracy)
    for key, value in {"model": "mlp", "dataset": "digits", "init": "kaiming", "seed": 3,
                       "epochs": 1, "bias_scale": None}.items():
        assert meta[key] == value
    assert meta["in_shape"] == [1, 8, 8]
    # `--checkpoint` of an analysis records the trained state.
    res = CliRunner().invoke(cli, ["slice", "--model", "mlp", "--checkpoint", "m.pt", "--space", "loss",
                                   "--grid", "-1:1:3", "--samples", "32", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    assert landscape.load("s.nc").attrs["state"] == "trained"


def test_training_is_seeded_and_adam_runs():
    x, y = landscape.load_dataset("digits", n=128, in_shape=(1, 4, 4), seed=0)
    weights = []
    for _ in range(2):
        model = landscape.build_model("mlp", init="xavier", seed=1, width=8, in_shape=(1, 4, 4))
        history, snaps = train(model, x, y, x, y, epochs=2, optimizer="adam", batch_size=32, seed=5)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert snaps == [] and history["steps"] == 8 and len(history["test_accuracy"]) == 2
    assert torch.equal(weights[0], weights[1])
    with pytest.raises(landscape.LandscapeError, match="optimizer"):
        train(model, x, y, x, y, optimizer="lbfgs")


def test_trajectory_pca_is_orthonormal_and_ends_at_the_origin(tiny_mlp, digits_small):
    x, y = digits_small
    history, snaps = train(tiny_mlp, x, y, x, y, epochs=3, batch_size=16, seed=0, trajectory_every=3)
    assert history["snapshot_steps"][0] == 0 and history["snapshot_steps"][-1] == history["steps"] == 12
    assert len(snaps) == 5
    dirs, proj = trajectory_directions(tiny_mlp, snaps, n=2)
    names = [k for k, _ in tiny_mlp.named_parameters()]
    flat = torch.stack([torch.cat([d[k].double().flatten() for k in names]) for d in dirs])
    assert torch.allclose(flat @ flat.T, torch.eye(2, dtype=torch.float64), atol=1e-5)
    assert proj.shape == (5, 2)
    np.testing.assert_allclose(proj[-1], 0, atol=1e-12)
    # Biases take part: with zero-direction biases the first direction would miss their motion.
    assert any(float(dirs[0][k].abs().sum()) > 0 for k in names if k.endswith("bias"))
    # Same as a dense PCA of θ_t − θ_final: coordinates reproduce the deviations' top-2 energy.
    mat = np.stack([torch.cat([s[k].double().flatten() for k in names]).numpy() for s in snaps])
    diffs = mat - mat[-1]
    sv = np.linalg.svd(diffs, compute_uv=False)
    np.testing.assert_allclose((proj**2).sum(0), sv[:2] ** 2, rtol=1e-5)
    np.testing.assert_allclose(diffs @ flat.numpy().T, proj, atol=1e-5)


def test_train_trajectory_then_pca_slice_through_the_cli():
    run = CliRunner().invoke
    res = run(cli, ["train", "--model", "mlp", "--width", "16", "--samples", "256", "--epochs", "2",
                    "--out", "m.pt", "--save-trajectory", "--trajectory-every", "4"])
    assert res.exit_code == 0, res.output
    steps, states = load_trajectory("m_trajectory")
    assert steps[0] == 0 and steps[-1] == 8 and len(states) == 3
    res = run(cli, ["slice", "--model", "mlp", "--width", "16", "--space", "loss", "--directions", "pca",
                    "--trajectory", "m_trajectory", "--grid", "-1:1:5", "--samples", "64", "--out", "p.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("p.nc")
    assert ds.attrs["directions"] == "pca" and ds.attrs["state"] == "trained"
    assert ds.trajectory_alpha.dims == ("step",) and list(ds.step.values) == steps
    assert float(ds.trajectory_alpha[-1]) == pytest.approx(0, abs=1e-9)
    assert float(ds.trajectory_beta[-1]) == pytest.approx(0, abs=1e-9)
    np.testing.assert_allclose(ds.direction_norm, 1, atol=1e-5)
    res = run(cli, ["plot", "p.nc"])
    assert res.exit_code == 0 and Path("p_figures", "p_loss.png").is_file()
    # Loss-space PCA without a trajectory: one clear line, no file.
    res = run(cli, ["slice", "--model", "mlp", "--space", "loss", "--directions", "pca", "--out", "q.nc"])
    assert res.exit_code != 0 and "--trajectory" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not Path("q.nc").exists()
