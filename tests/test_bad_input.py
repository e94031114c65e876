"""Bad input is one clear line before any work; every file is safe; every figure
readable (its text artists do not overlap)."""

import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import cli

MLP = ["--model", "mlp", "--init", "xavier", "--in-shape", "1x4x4", "--width", "8"]
SLICE = ["slice", *MLP, "--samples", "32", "--grid", "-1:1:3", "--units", "2", "--anchors", "2"]
HESSIAN = ["hessian", *MLP, "--samples", "32", "--top-k", "1", "--max-steps", "6"]
TRAIN = ["train", *MLP, "--epochs", "1", "--samples", "32", "--test-samples", "16"]
CNN_BASE = ["sae", "--model", "cnn", "--in-shape", "1x8x8", "--width", "4", "--dataset", "digits",
            "--samples", "48", "--layer", "act2", "--batch-size", "64", "--epochs", "1",
            "--maxact-latents", "0"]
CNN_SAE = [*CNN_BASE, "--expansion", "2", "--k", "2"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def invoke(args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)


def files() -> set[str]:
    return {str(p) for p in Path(".").rglob("*")}


def refused(args, *words):
    """The command exits non-zero with one line naming ``words``, writes nothing
    and never calls itself an internal error."""
    before = files()
    res = invoke(args)
    text = res.output
    assert res.exit_code != 0, text
    assert len(text.strip().splitlines()) == 1, text
    assert "internal error" not in text and "Traceback" not in text, text
    for word in words:
        assert word in text, (word, text)
    assert files() == before, sorted(files() - before)
    return text


def write_npz(name="d.npz", n=32, features=(1, 4, 4), x=None, y=None, classes=10, **extra):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *features)).astype(np.float32) if x is None else x
    y = rng.integers(0, classes, size=len(x)) if y is None else y
    np.savez(name, x=x, y=y, **extra)
    return f"npz:{name}"


FACTORY = """
import sys
import torch.nn as nn

def build(inputs=16, outputs=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, outputs))

def leaves():
    sys.exit(3)
"""


def factory(name="build"):
    Path("net.py").write_text(FACTORY)
    return f"net.py:{name}"


# ----------------------------------------------------------------------------- data values

@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("command", [SLICE, HESSIAN, TRAIN])
def test_non_finite_data_is_refused_naming_file_and_rows(bad, command):
    x = np.random.default_rng(0).normal(size=(32, 1, 4, 4)).astype(np.float32)
    x[[3, 17], 0, 1, 2] = bad
    data = write_npz(x=x)
    np.savez("t.npz", x=x, y=np.zeros(32, dtype=int), x_test=x[:16], y_test=np.zeros(16, dtype=int))
    if command is TRAIN:
        data = "npz:t.npz"
    refused([*command, "--dataset", data], data.split(":")[1], "2 of 32 rows", "NaN or inf")


@pytest.mark.parametrize("loss", ["cross-entropy", "mse", "bce"])
def test_labels_outside_the_outputs_are_refused_for_every_loss(loss):
    data = write_npz(features=(16,), classes=9)  # labels 0..8, the model has 8 outputs
    refused([*SLICE[:1], "--model", factory(), "--samples", "32", "--space", "loss", "--dims", "1",
             "--grid", "-1:1:3", "--loss", loss, "--dataset", data], "labels up to 8", "8 outputs")


def test_negative_labels_are_refused():
    data = write_npz(features=(16,), y=np.r_[-1, np.zeros(31, dtype=int)])
    refused(["slice", "--model", factory(), "--samples", "32", "--space", "loss", "--dims", "1",
             "--grid", "-1:1:3", "--dataset", data], "negative label")


# ----------------------------------------------------------------------------- user errors

def test_forward_failing_on_the_data_names_the_options():
    data = write_npz(features=(10,))
    refused(["slice", "--model", factory(), "--samples", "32", "--space", "loss", "--dims", "1",
             "--grid", "-1:1:3", "--dataset", data], "--dataset", "(10,)", "--model")


def test_x_of_the_wrong_rank_names_the_options():
    data = write_npz(x=np.zeros(32, dtype=np.float32))
    refused(["slice", "--model", factory(), "--samples", "32", "--space", "loss", "--dims", "1",
             "--grid", "-1:1:3", "--dataset", data], "--dataset", "--model")


def test_integer_x_names_the_dataset():
    data = write_npz(x=np.ones((32, 1, 4, 4), dtype=np.int64))
    refused([*SLICE, "--dataset", data], "--dataset", "integer")


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_seed_out_of_range_names_the_option(seed):
    refused([*SLICE, "--seed", seed], "--seed")


def test_factory_calling_sys_exit_is_named():
    refused(["slice", "--model", factory("leaves"), "--samples", "32"], "net.py:leaves", "sys.exit(3)")


# ----------------------------------------------------------------------------- checkpoints

def test_corrupt_checkpoint_is_one_line_of_ours():
    import argparse

    Path("junk.pt").write_bytes(b"\x80\x02not a pickle at all")
    torch.save({"state_dict": {}, "meta": argparse.Namespace(a=1)}, "evil.pt")
    for path in ("junk.pt", "evil.pt"):
        text = refused([*SLICE, "--checkpoint", path], path)
        assert "weights_only" not in text and "likely succeed" not in text, text
        assert "Warning" not in text, text
    text = refused([*CNN_SAE, "--sae", "evil.pt"], "evil.pt")
    assert "weights_only" not in text


# ----------------------------------------------------------------------------- npz size

def _npz_declaring(name, shape, compress=True):
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(b"\0" * 4096)
    with zipfile.ZipFile(name, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        zf.writestr("x.npy", buf.getvalue())
    return f"npz:{name}"


def test_npz_declaring_more_than_the_budget_is_refused_before_reading(monkeypatch):
    monkeypatch.setenv("LANDSCAPE_MAX_MEMORY", "100MB")  # 64 rows of 4 MB do not fit
    data = _npz_declaring("huge.npz", (10**7, 10**6))
    with pytest.raises(landscape.LandscapeError, match=r"huge.npz.*declares.*40 TB.*budget"):
        landscape.load_dataset(data, n=64)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_reads_only_the_rows_asked_for(save, monkeypatch):
    import importlib.util
    import tracemalloc

    if importlib.util.find_spec("landscape.npz"):  # decompress 1 MB at a time
        monkeypatch.setattr(importlib.import_module("landscape.npz"), "CHUNK", 2**20)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20000, 256)).astype(np.float32)  # 20 MB
    y = rng.integers(0, 10, size=20000)
    save("big.npz", x=x, y=y)
    del x
    tracemalloc.start()
    xs, ys = landscape.load_dataset("npz:big.npz", n=16, seed=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8e6, peak  # the array is 20 MB
    from landscape.data import subset_index

    full = np.load("big.npz")
    idx = subset_index(20000, 16, 2)
    np.testing.assert_array_equal(xs.numpy(), full["x"][idx])
    np.testing.assert_array_equal(ys.numpy(), full["y"][idx])


# ----------------------------------------------------------------------------- outputs

UNWRITABLE = "/sys"  # sysfs refuses new files even to root


def test_unwritable_outputs_are_refused_before_the_work(monkeypatch):
    import landscape.slicing

    def no_work(*_a, **_k):
        raise AssertionError("the work started")

    monkeypatch.setattr(landscape.slicing, "loss_slice", no_work)
    refused([*SLICE, "--space", "loss", "--out", f"{UNWRITABLE}/r.nc"], UNWRITABLE, "not writable")
    refused([*CNN_SAE, "--out", f"{UNWRITABLE}/r.nc"], UNWRITABLE, "not writable")
    refused([*TRAIN, "--out", "m.pt", "--save-trajectory", "--trajectory-dir", f"{UNWRITABLE}/traj"],
            "trajectory", "not writable")
    assert invoke([*SLICE, "--space", "input", "--out", "s.nc"]).exit_code == 0
    refused(["plot", "s.nc", "--out", f"{UNWRITABLE}/figs"], UNWRITABLE, "not writable")


def test_sae_weights_follow_the_overwrite_rule_and_the_umask():
    old = os.umask(0o022)
    try:
        res = invoke([*CNN_SAE, "--out", "r.nc"])
        assert res.exit_code == 0, res.output
        assert stat.S_IMODE(os.stat("r.sae.pt").st_mode) == 0o644
        assert stat.S_IMODE(os.stat("r.nc").st_mode) == 0o644
        weights = Path("r.sae.pt").read_bytes()
        Path("r.nc").unlink()
        refused([*CNN_SAE, "--out", "r.nc"], "r.sae.pt", "--overwrite")
        assert Path("r.sae.pt").read_bytes() == weights
    finally:
        os.umask(old)


def test_stale_trajectory_temp_files_are_removed():
    folder = Path("traj")
    folder.mkdir()
    (folder / ".step_001.pt.x1y2z3.tmp").write_bytes(b"")
    res = invoke([*TRAIN, "--out", "m.pt", "--save-trajectory", "--trajectory-dir", "traj",
                  "--trajectory-every", "1"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == []
    assert len(list(folder.glob("step_*.pt"))) >= 1


def test_threads_recorded_in_every_result():
    res = invoke([*SLICE, "--space", "input", "--threads", "1", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("s.nc")
    assert ds.attrs["threads"] == 1 and json.loads(ds.attrs["config"])["threads"] == 1
    res = invoke([*CNN_SAE, "--threads", "1", "--out", "r.nc"])
    assert res.exit_code == 0, res.output
    assert landscape.load("r.nc").attrs["threads"] == 1
    res = invoke([*SLICE, "--space", "input", "--out", "d.nc"])
    assert landscape.load("d.nc").attrs["threads"] == torch.get_num_threads()
    refused([*SLICE, "--threads", "0"], "threads")


def test_help_lists_init_variants_and_threads():
    for command in ("sae", "slice", "hessian", "maxact", "tsne"):
        text = invoke([command, "--help"]).output
        assert "--threads" in text, command
    assert "init:SCHEME[:S]" in invoke(["sae", "--help"]).output


# ----------------------------------------------------------------------------- sae options

def test_sae_few_samples_without_maxact_latents():
    res = invoke([*CNN_SAE, "--samples", "16", "--out", "r.nc"])
    assert res.exit_code == 0, res.output
    assert landscape.load("r.nc").sizes["rank"] == 8


@pytest.mark.parametrize("tokens", ["0", "1"])
def test_sae_too_few_tokens_are_refused(tokens):
    refused([*CNN_SAE, "--tokens", tokens], "tokens")


def test_sae_from_file_records_what_was_used():
    assert invoke([*CNN_SAE, "--out", "r.nc"]).exit_code == 0
    refused([*CNN_SAE, "--sae", "r.sae.pt", "--expansion", "4", "--out", "a.nc"], "expansion", "r.sae.pt")
    refused([*CNN_SAE, "--sae", "r.sae.pt", "--k", "3", "--out", "a.nc"], "k", "r.sae.pt")
    res = invoke([*CNN_BASE, "--sae", "r.sae.pt", "--out", "a.nc"])
    assert res.exit_code == 0, res.output
    config = json.loads(landscape.load("a.nc").attrs["config"])
    trained = json.loads(landscape.load("r.nc").attrs["config"])
    assert config["expansion"] == 2 and config["k"] == 2
    assert config["sae"] == trained["sae"] and config["sae"]["k"] == 2


def test_loss_recovered_within_noise_is_nan_with_a_reason():
    from landscape.commands.sae import _sae_summary
    from landscape.sae.metrics import loss_recovered

    assert loss_recovered(1.0, 1.1, 2.0, gap_stderr=0.1) == pytest.approx(0.9)
    assert np.isnan(loss_recovered(1.0, 1.05, 1.0 + 1.5e-4, gap_stderr=1e-3))
    # A random layer whose mean ablation changes the loss by less than its noise.
    torch.manual_seed(0)
    from landscape.sae import TopKSAE, sae_metrics

    model = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Linear(6, 3))
    with torch.no_grad():
        model[1].weight.mul_(1e-3)
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    ds = sae_metrics(model, TopKSAE(6, 12, 3), x, y, "0")
    assert np.isnan(ds.loss_recovered_mean.values.item())
    assert "noise" in ds.loss_recovered_mean.attrs["reason"]
    assert any("within noise" in line for line in _sae_summary(ds))


# ----------------------------------------------------------------------------- progress

def test_progress_lines_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setenv("LANDSCAPE_PROGRESS_INTERVAL", "0")
    res = invoke([*SLICE, "--space", "loss", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and all("elapsed" in line for line in lines), res.stderr
    assert res.stdout.strip().splitlines()[-1] == "s.nc"
