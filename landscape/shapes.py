"""``shapes``: a procedural image dataset whose pixels do not give the class away.

Each image shows one shape on a textured background among clutter; the class is
the shape's kind, one of :data:`KINDS`.  Everything else is drawn at random for
every image: position, size, rotation, colour, whether it is filled or drawn as
an outline and how thick its stroke is, the background's colour and texture
(a smooth random field, or stripes of random frequency and angle), and the
clutter (small discs and bars in other colours).  So two images of one class
share almost no pixels, and pixel-space neighbours carry little of the class:
the measured 9-nearest-neighbour class purity of the standardised pixels is
printed by ``landscape info`` and asserted in the tests, while a small trained
cnn learns the kinds from their local geometry (corners, their number and
angle, curvature, holes).

The kinds are chosen to stay distinct under every rotation and scale: a disc,
a triangle, a square, a five-pointed star, a plus, a ring, a crescent, a
half-disc, an arrow and a bar (a pentagon and a hexagon were dropped: small ones
cannot be told apart at 32 px).  Each is a signed distance field in the shape's own
frame (:func:`_signed_distance`); a pixel's coverage is the field clipped to
one pixel's width, which anti-aliases the edges.

Measured (defaults of :data:`NUISANCE`, 32 px): the pixel 9-NN purity of the
first 2 000 training images is 0.134 against a chance of 0.0995
(:data:`PIXEL_PURITY`), while the zoo's ``cnn`` learns the kinds: ``landscape
train --model cnn --dataset shapes --in-shape 3x32x32 --width 32 --optimizer
adam --lr 2e-3 --schedule cosine --epochs 12 --batch-size 128`` reaches 0.960
test accuracy (0.893 after 8 epochs) in 3 min 40 s on the 2-core CPU (216 s of
CPU time, with another job running); ``resnet18`` (``--optimizer adam --lr 2e-3
--schedule cosine --batch-size 128 --epochs 4 --samples 10000``) reaches 0.981
(172 s of CPU time).

Deterministic: image ``i`` of a split is drawn from a generator seeded by
``(seed, split, i)``, so a subset or a longer split never changes an image,
and the same call returns the same pixels on every machine.
"""

from __future__ import annotations

import numpy as np

KINDS = ("disc", "triangle", "square", "star", "plus", "ring", "crescent", "half-disc",
         "arrow", "bar")
SIZES = (32, 64)
SPLIT_SIZES = {"train": 20_000, "test": 2_000}
_SPLIT_KEY = {"train": 0, "test": 1}
_CHUNK = 500
# 9-NN class purity of the standardised pixels of the first 2 000 training images
# (seed 0, 32 px; 64 px: 0.133); chance is 0.0995.  `landscape info` prints it and
# tests/test_datasets_real.py recomputes it from the generator.
PIXEL_PURITY = 0.134
PURITY_SAMPLE = 2_000
# How much of each nuisance an image gets.
NUISANCE = dict(texture=0.15, clutter=(0, 3), outline=0.2, scale=(0.55, 0.9))


def _polygon(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], 1)


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.42) -> np.ndarray:
    t = np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


_PLUS = np.array([[0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3],
                  [-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3]])
_ARROW = np.array([[1, 0], [0.1, 0.75], [0.1, 0.3], [-1, 0.3], [-1, -0.3], [0.1, -0.3],
                   [0.1, -0.75]])
_BAR = np.array([[1, 0.28], [-1, 0.28], [-1, -0.28], [1, -0.28]])
_POLYGONS = {"triangle": _polygon(3, 1.05, np.pi / 2), "square": _polygon(4, 0.95, np.pi / 4),
             "star": _star(), "plus": _PLUS, "arrow": _ARROW, "bar": _BAR}


def _polygon_sdf(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of points to a closed polygon."""
    dist = np.full(px.shape, np.inf)
    inside = np.zeros(px.shape, dtype=bool)
    for (ax, ay), (bx, by) in zip(vertices, np.roll(vertices, -1, axis=0)):
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(wx - t * ex, wy - t * ey))
        crosses = (ay > py) != (by > py)
        x_at = ax + (py - ay) * ex / np.where(ey == 0, 1.0, ey)
        inside ^= crosses & (px < x_at)
    return np.where(inside, -dist, dist)


def _signed_distance(kind: str, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed distance field of ``kind`` in its own frame (about unit size)."""
    r = np.hypot(px, py)
    if kind == "disc":
        return r - 1.0
    if kind == "ring":
        return np.abs(r - 0.72) - 0.28
    if kind == "crescent":
        return np.maximum(r - 1.0, -(np.hypot(px - 0.45, py) - 0.8))
    if kind == "half-disc":
        return np.maximum(r - 1.0, -py - 0.15)
    return _polygon_sdf(px, py, _POLYGONS[kind])


def coverage(kind: str, size: int, cx: float, cy: float, scale: float, theta: float,
             stroke: float | None = None) -> np.ndarray:
    """Share in [0, 1] of each pixel of a ``size x size`` image (rows are y, columns
    x, both spanning [-1, 1]) that shape ``kind`` covers when centred at ``(cx, cy)``,
    scaled by ``scale`` and turned by ``theta``; with ``stroke`` only its outline,
    a band of that half-width about the boundary.  Pixels whose centre lies more
    than half a pixel inside are 1, more than half a pixel outside 0 (the crescent's
    field is a lower bound of the distance next to its two horns, so there a few
    pixels further out get some coverage)."""
    u = (np.arange(size) + 0.5) / size * 2 - 1
    gx, gy = np.meshgrid(u, u)
    dx, dy = gx - cx, gy - cy
    px = (dx * np.cos(theta) + dy * np.sin(theta)) / scale
    py = (-dx * np.sin(theta) + dy * np.cos(theta)) / scale
    d = _signed_distance(kind, px, py) * scale
    if stroke is not None:
        d = np.abs(d) - stroke
    return np.clip(0.5 - d / (2.0 / size), 0, 1)


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field on ``size x size`` pixels: a ``cells x cells`` grid of
    normal values, bilinearly interpolated."""
    grid = rng.standard_normal((cells + 1, cells + 1))
    t = np.linspace(0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _colour_apart(rng: np.random.Generator, other: np.ndarray, gap: float = 0.45) -> np.ndarray:
    """A random colour at least ``gap`` away from ``other`` in RGB (Euclidean)."""
    while True:
        c = rng.random(3)
        if np.linalg.norm(c - other) >= gap:
            return c


def _image(kind: int, rng: np.random.Generator, size: int) -> np.ndarray:
    u = (np.arange(size) + 0.5) / size * 2 - 1
    gx, gy = np.meshgrid(u, u)
    pixel = 2.0 / size
    # Background: a colour, and a smooth field or stripes on top of it.
    bg = rng.random(3)
    if rng.random() < 0.5:
        texture = _smooth_field(rng, size, int(rng.integers(2, 7)))
        texture = NUISANCE["texture"] * texture / max(np.abs(texture).max(), 1e-6)
    else:
        angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 7)
        texture = NUISANCE["texture"] * np.sin(np.pi * freq * (gx * np.cos(angle) + gy * np.sin(angle))
                               + rng.uniform(0, 2 * np.pi))
    tint = rng.uniform(-0.35, 0.35, 3)
    img = np.clip(bg[:, None, None] + tint[:, None, None] * texture[None], 0, 1)
    # Clutter: small discs and bars, drawn before the shape.
    for _ in range(int(rng.integers(*NUISANCE["clutter"]))):
        c = rng.random(3)
        cx, cy = rng.uniform(-1, 1, 2)
        if rng.random() < 0.5:
            d = np.hypot(gx - cx, gy - cy) - rng.uniform(0.04, 0.1)
        else:
            a = rng.uniform(0, np.pi)
            along = (gx - cx) * np.cos(a) + (gy - cy) * np.sin(a)
            across = -(gx - cx) * np.sin(a) + (gy - cy) * np.cos(a)
            d = np.maximum(np.abs(along) - rng.uniform(0.1, 0.3), np.abs(across) - 0.02)
        alpha = np.clip(0.5 - d / pixel, 0, 1)
        img = img * (1 - alpha) + c[:, None, None] * alpha
    # The shape.
    scale = rng.uniform(*NUISANCE["scale"])
    cx, cy = rng.uniform(-1 + scale, 1 - scale, 2)
    theta = rng.uniform(0, 2 * np.pi)
    stroke = rng.uniform(0.04, 0.09) if rng.random() < NUISANCE["outline"] else None
    alpha = coverage(KINDS[kind], size, cx, cy, scale, theta, stroke)
    fg = _colour_apart(rng, img.mean(axis=(1, 2)))
    img = img * (1 - alpha) + fg[:, None, None] * alpha
    return img.astype(np.float32)


def _labels(split: str, n: int, seed: int) -> np.ndarray:
    blocks = -(-n // len(KINDS))
    rows = [np.random.default_rng([seed, _SPLIT_KEY[split], 7, b]).permutation(len(KINDS))
            for b in range(blocks)]
    return np.concatenate(rows)[:n].astype(np.int64) if rows else np.zeros(0, np.int64)


def generate(split: str, size: int = 32, n: int | None = None,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, size, size)`` in [0, 1] and labels ``(n,)`` of one split.

    Each block of ``len(KINDS)`` consecutive images holds every kind once, in a
    seeded order of its own, so the classes are balanced and the first ``n``
    images never depend on ``n``; ``n`` defaults to the split's size (:data:`SPLIT_SIZES`)."""
    n = SPLIT_SIZES[split] if n is None else int(n)
    return generate_at(split, np.arange(n), size, seed)


def generate_at(split: str, indices, size: int = 32,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images ``indices`` of a split and their labels, each the same as in
    :func:`generate` (image ``i`` depends on ``(seed, split, i)`` only), drawn
    without the others: a subset costs its own size."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size}")
    indices = np.asarray(indices, dtype=np.int64)
    labels = _labels(split, int(indices.max()) + 1 if indices.size else 0, seed)[indices]
    images = np.empty((len(indices), 3, size, size), dtype=np.float32)
    for j, i in enumerate(indices):
        rng = np.random.default_rng([seed, _SPLIT_KEY[split], int(i)])
        images[j] = _image(int(labels[j]), rng, size)
    return images, labels


def knn_purity(x: np.ndarray, y: np.ndarray, k: int = 9) -> float:
    """Mean share of each sample's ``k`` nearest neighbours (Euclidean, on the
    flattened and standardised inputs, itself left out) that share its label."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    flat = (flat - flat.mean(0)) / (flat.std(0) + 1e-8)
    sq = (flat ** 2).sum(1)
    same = 0.0
    for start in range(0, len(flat), _CHUNK):
        block = flat[start:start + _CHUNK]
        d = sq[start:start + _CHUNK, None] - 2 * block @ flat.T + sq[None, :]
        d[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.argpartition(d, k, axis=1)[:, :k]
        same += (y[nearest] == y[start:start + _CHUNK, None]).sum()
    return float(same / (len(flat) * k))


def split_statistics(size: int = 32, seed: int = 0,
                     train: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the training split (float32),
    the standardisation :func:`landscape.load_dataset` applies to both splits;
    ``train``: that split, when the caller has already generated it.  Seed 0's
    are :data:`TRAIN_STATISTICS` (drawing the 20 000 images takes seconds; the
    tests recompute them)."""
    key = (size, seed)
    if key not in _STATISTICS and train is None and seed == 0:
        mean, std = TRAIN_STATISTICS[size]
        _STATISTICS[key] = (np.array(mean, np.float32), np.array(std, np.float32))
    if key not in _STATISTICS:
        x = generate("train", size, seed=seed)[0] if train is None else train
        _STATISTICS[key] = (x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)))
    return _STATISTICS[key]


# split_statistics(size) of seed 0's training split, as float32 values: (mean, std) per channel.
TRAIN_STATISTICS = {
    32: ((0.5011650323867798, 0.49944907426834106, 0.49913012981414795),
         (0.28513163328170776, 0.2854683995246887, 0.28315237164497375)),
    64: ((0.5011700391769409, 0.49944671988487244, 0.4991336464881897),
         (0.2878119647502899, 0.28815072774887085, 0.28581538796424866)),
}
_STATISTICS: dict = {}
