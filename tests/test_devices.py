"""Device readiness on any machine: training keeps its reductions on the device
and synchronises once per epoch, runs deterministically on CUDA, records its
threads; trajectories come back to the host.  CUDA-only checks skip elsewhere."""

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import cli
from landscape.memory import usable_cores
from landscape.models import load_checkpoint
from landscape.train import CUBLAS_DETERMINISTIC, deterministic, train
from landscape.trajectory import trajectory_directions

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _data():
    return landscape.load_dataset("digits", n=64, in_shape=(1, 4, 4), seed=0)


def test_training_reads_the_device_once_per_epoch(monkeypatch):
    x, y = _data()
    model = landscape.build_model("mlp", init="xavier", seed=1, width=8, in_shape=(1, 4, 4))
    train(model, x, y, x, y, epochs=1, batch_size=32, seed=0)  # first-call imports, unpatched
    reads = []
    for name in ("__float__", "__int__", "item"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    history, _ = train(model, x, y, x, y, epochs=3, batch_size=8, seed=0)
    monkeypatch.undo()
    assert history["steps"] == 24
    # Per epoch: the training loss, and the held-out loss and accuracy (one read each).
    assert len(reads) <= 3 * 3, reads


def test_deterministic_settings_on_cuda_only_and_restored(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "x")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.benchmark, cudnn.deterministic)
    with deterministic(torch.device("cpu")):
        assert not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    # The CUDA branch only sets flags: it runs without a GPU.
    with deterministic(torch.device("cuda")):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_DETERMINISTIC == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), cudnn.benchmark,
            cudnn.deterministic) == before
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own choice is kept
    with deterministic("cuda:0"):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_train_command_records_its_threads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(7 if usable_cores() != 7 else 5)
    common = ["train", "--model", "mlp", "--width", "8", "--in-shape", "1x4x4", "--samples", "64",
              "--test-samples", "32", "--epochs", "1", "--device", "cpu"]
    for extra, expected in (([], usable_cores()), (["--threads", "1"], 1)):
        res = CliRunner().invoke(cli, [*common, *extra, "--out", "m.pt", "--overwrite"])
        assert res.exit_code == 0, res.output
        meta = load_checkpoint(landscape.build_model("mlp", width=8, in_shape=(1, 4, 4)), "m.pt")
        assert meta["threads"] == expected and meta["device"] == "cpu"


@CUDA
def test_cuda_training_is_reproducible_and_trajectory_comes_back_to_the_host():
    x, y = (t.cuda() for t in _data())
    weights, snaps = [], None
    for _ in range(2):
        model = landscape.build_model("cnn", init="xavier", seed=1, in_shape=(1, 4, 4)).cuda()
        _, snaps = train(model, x, y, x, y, epochs=2, batch_size=16, seed=5, trajectory_every=2)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    states = [{k: v.cuda() for k, v in s.items()} for s in snaps]  # checkpoints held on the GPU
    dirs, proj = trajectory_directions(model, states, n=2)
    assert isinstance(proj, np.ndarray) and dirs[0][next(iter(dirs[0]))].is_cuda
