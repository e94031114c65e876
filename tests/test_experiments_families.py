"""Q5/Q6 on shapes (experiments/q5_feature_families.py) and Q8's --data option: the
top-k statistics against constructed features, the intervals against scipy, and the
--quick runs against the toolkit's own maxact and an independent probe fit.

The --quick runs read ``shapes`` with its splits shortened to 300 train and 200 test
images (the generator draws image i the same whatever the split's length, so these
are the full splits' first images), which keeps each run to seconds."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats
from test_experiments import _script  # the experiments' loader (tests/ is on the path)

import landscape
from landscape import shapes
from landscape.maxact import maxact


@pytest.fixture(scope="module")
def fam():
    return _script("q5_feature_families")


@pytest.fixture(scope="module")
def q8():
    return _script("q8_architecture_prior")


@pytest.fixture(scope="module")
def small_shapes(q8):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shapes, "SPLIT_SIZES", {"train": 300, "test": 200})
        mp.setattr(shapes, "_STATISTICS", {})
        mp.setattr(q8, "_LOADED", {})
        yield


# ----------------------------------------------------------------------------- helpers

def test_feature_stats_on_constructed_features(fam):
    labels = np.arange(200) % 10
    flat = np.arange(200, dtype=float)[:, None]  # image i sits at position i on a line
    act = np.stack([
        (labels == 3).astype(float),   # an indicator of class 3: 20 tied ones, all class 3
        np.full(200, 2.5),             # constant: dead
        np.arange(200, dtype=float),   # top-9 = images 191..199, labels 1..9
        (labels == 3) + 4.0 * (np.arange(200) == 3),  # one image above 19 tied ones
    ], axis=1)
    st = fam.feature_stats(act, labels, flat, 9, reference=2.0, rng=np.random.default_rng(0))
    assert st["dead"].tolist() == [False, True, False, False]
    assert st["tied"].tolist() == [True, False, False, True]
    assert 3 in st["topk_index"][3] and st["purity"][3] == 1.0
    assert st["purity"][0] == 1.0 and np.isnan(st["purity"][1])
    assert st["purity"][2] == pytest.approx(1 / 9)
    assert sorted(st["topk_index"][2]) == list(range(191, 200))
    # mean |i - j| over the 36 pairs of 9 consecutive integers is 120/36
    assert st["compactness"][2] == pytest.approx(120 / 36 / 2.0)
    assert set(st["topk_index"][0]) <= set(np.nonzero(labels == 3)[0])
    assert st["active"][0] == pytest.approx(0.1)


def test_topk_ties_are_broken_at_random(fam):
    # 40 images tie for the top; a stable sort would always return the 9 lowest indices.
    act = np.zeros((100, 1))
    tied = np.arange(30, 70)
    act[tied] = 1.0
    rng = np.random.default_rng(1)
    counts = Counter()
    for _ in range(400):
        top = fam.topk_order(act, 9, rng)[0]
        assert set(top) <= set(tied)
        counts.update(top.tolist())
    # each tied image is picked with probability 9/40 per draw: 90 of 400 (sd 8.3)
    assert len(counts) == 40 and min(counts.values()) > 55 and max(counts.values()) < 125


def test_interval_is_students_t(fam):
    v = np.array([0.31, 0.35, 0.29, 0.4, 0.33])
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    r = fam.interval(v)
    assert r["ci"] == pytest.approx([lo, hi]) and r["mean"] == pytest.approx(v.mean())


def test_verdict_needs_both_intervals_apart(fam):
    def entry(cnn, fourier, projection, trained=(0.9, 0.95)):
        def iv(lo_hi):
            return {"purity": {"mean": sum(lo_hi) / 2, "ci": list(lo_hi)}}
        return {"chance": 0.2, "families": {"random-cnn": iv(cnn), "fourier": iv(fourier),
                                            "projection": iv(projection),
                                            "trained-cnn": iv(trained)}}

    shows = fam.verdicts({"shapes": entry((0.4, 0.5), (0.2, 0.3), (0.25, 0.39))})
    assert shows["shapes"]["prior"] and shows["verdict"].startswith("an architectural prior shows")
    overlap = fam.verdicts({"shapes": entry((0.4, 0.5), (0.2, 0.3), (0.25, 0.41))})
    assert not overlap["shapes"]["prior"] and overlap["verdict"].startswith("no architectural")
    assert overlap["shapes"]["above_chance"] and overlap["shapes"]["trained_above_random"]


# ----------------------------------------------------------------------------- --quick runs

@pytest.fixture(scope="module")
def fam_quick(fam, small_shapes, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("families")
    summary = fam.main(["--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")])
    with open(tmp / "results" / "units.csv") as fh:
        rows = list(csv.DictReader(fh))
    return summary, rows, tmp


def test_families_quick_top9_against_pixels_and_maxact(fam, fam_quick):
    summary, rows, tmp = fam_quick
    cfg = fam.SIZES["quick"]
    xt, yt = landscape.load_dataset("shapes", split="test", n=cfg["test"]["shapes"])
    flat = xt.flatten(1).double().numpy()
    labels = yt.numpy()
    reference = summary["data"]["shapes"]["reference_distance"]
    checked = 0
    for r in rows:
        top = [int(i) for i in r["topk"].split()]
        if r["family"] == "pixels":
            # the 9 listed images hold the 9 largest values of that pixel
            values = flat[:, int(r["unit"])]
            assert sorted(values[top]) == pytest.approx(sorted(values)[-9:])
        if r["dead"] == "True":
            assert r["purity"] == "nan"
            continue
        assert float(r["purity"]) == pytest.approx(Counter(labels[top]).most_common(1)[0][1] / 9)
        pairs = [np.linalg.norm(flat[a] - flat[b]) for i, a in enumerate(top) for b in top[i + 1:]]
        assert float(r["compactness"]) == pytest.approx(np.mean(pairs) / reference)
        checked += 1
    assert len(rows) == len(fam.FAMILIES) * 2 * cfg["features"]  # every family, 2 seeds
    assert checked >= 0.8 * len(rows)
    # The random networks' top-9 are landscape.maxact's (BatchNorm statistics recomputed
    # on the test images for resnet18), wherever the 9th and 10th values do not tie.
    compared = 0
    for family in ("random-cnn", "random-resnet18"):
        mine = [r for r in rows if r["family"] == family and r["seed"] == "1"]
        net = fam.network(family, 1, tuple(xt.shape[1:]), cfg)
        units = [int(r["unit"]) for r in mine]
        ds = maxact(net, fam.LAYERS[family], units, xt, top_k=9, restarts=1, steps=1)
        for r, ref in zip(mine, ds["topk_index"].values):
            if r["tied"] == "False" and r["dead"] == "False":
                assert sorted(int(i) for i in r["topk"].split()) == sorted(ref.tolist())
                compared += 1
    assert compared >= 8
    # the trained networks learned something, and the figure was written
    assert len(summary["data"]["shapes"]["networks"]) == 2
    assert (tmp / "figures" / "q5_families.png").stat().st_size > 1000
    assert summary["verdicts"]["verdict"] in ("an architectural prior shows on shapes",
                                              "no architectural prior shows on shapes")


def test_families_quick_intervals_from_the_rows(fam, fam_quick):
    summary, rows, _ = fam_quick
    for family, entry in summary["data"]["shapes"]["families"].items():
        per_seed = []
        for seed in ("0", "1"):
            live = [float(r["purity"]) for r in rows if r["family"] == family and r["seed"] == seed
                    and r["dead"] == "False"]
            per_seed.append(np.mean(live))
        v = np.array(per_seed)
        half = stats.t.ppf(0.975, 1) * v.std(ddof=1) / np.sqrt(2)
        assert entry["purity"]["ci"] == pytest.approx([v.mean() - half, v.mean() + half])
        assert entry["dead"] == sum(r["dead"] == "True" for r in rows if r["family"] == family)


def test_q8_quick_on_shapes(q8, small_shapes, tmp_path):
    summary = q8.main(["--quick", "--data", "shapes", "--out", str(tmp_path / "results"),
                       "--figures", str(tmp_path / "figures")])
    cfg = q8.config("shapes", "quick")
    assert cfg["in_shape"] == {"mlp": (3, 32, 32), "cnn": (3, 32, 32)} and q8.shift_of(32) == 4
    # The pixel probe against an independent fit at the C it chose.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = landscape.load_dataset("shapes", n=cfg["samples"], split="train")
    xt, yt = landscape.load_dataset("shapes", n=cfg["test_samples"], split="test")
    flat, flat_t = x.flatten(1).numpy().astype(float), xt.flatten(1).numpy().astype(float)
    scaler = StandardScaler().fit(flat)
    ref = LogisticRegression(C=summary["pixels"]["C"], max_iter=2000).fit(scaler.transform(flat), y.numpy())
    assert summary["pixels"]["test"] == pytest.approx(ref.score(scaler.transform(flat_t), yt.numpy()),
                                                      abs=0.02)
    # The shifted test images are the images moved 4 pixels: the shifted pixel probe
    # scores what the same fit scores on them.
    moved = q8.shift_right(xt, 4).flatten(1).numpy().astype(float)
    assert summary["pixels"]["shifted"] == pytest.approx(ref.score(scaler.transform(moved), yt.numpy()),
                                                         abs=0.02)
    # The verdicts' intervals are Student's t over the seeds of probes.csv.
    with open(tmp_path / "results" / "probes.csv") as fh:
        rows = list(csv.DictReader(fh))
    for cell in summary["verdicts"]["cells"]:
        acc = [float(r["test"]) for r in rows if r["model"] == cell["model"]
               and r["state"] == f"random-{cell['init']}"]
        lo, hi = stats.t.interval(0.95, len(acc) - 1, loc=np.mean(acc), scale=stats.sem(acc))
        assert cell["test"]["ci"] == pytest.approx([lo, hi])
        assert cell["above"] == (lo > cell["rff"]["ci"][1] and lo > summary["pixels"]["test"])
    for name in ("q8_shapes_probe_accuracy.png", "q8_shapes_shift.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    # digits keeps its own settings
    assert q8.config("digits", "default") == dict(q8.SIZES["default"], data="digits")


def test_q8_rejects_unknown_data(q8, capsys):
    with pytest.raises(SystemExit) as e:
        q8.main(["--quick", "--data", "cifar"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_shapes_split_shortened_keeps_the_first_images(small_shapes):
    # what the --quick runs above rely on: image i does not depend on the split's length
    short = shapes.generate("test", 32, n=5)[0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shapes, "SPLIT_SIZES", {"train": 20_000, "test": 2_000})
        assert np.array_equal(shapes.generate("test", 32, n=5)[0], short)
    assert torch.is_tensor(landscape.load_dataset("shapes", split="test", n=5)[0])
