import pytest
import torch

import landscape
from landscape.errors import LandscapeError


def test_digits_default_shape_and_standardisation():
    x, y = landscape.load_dataset("digits")
    assert x.shape == (1438, 1, 8, 8) and y.shape == (1438,)
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    assert set(y.tolist()) == set(range(10))
    xt, _ = landscape.load_dataset("digits", split="test")
    assert xt.shape[0] == 359


def test_digits_resized_and_channel_expanded():
    x, _ = landscape.load_dataset("digits", n=10, in_shape=(3, 32, 32))
    assert x.shape == (10, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1])


def test_subset_is_deterministic_and_seeded():
    a, ya = landscape.load_dataset("digits", n=50, seed=3)
    b, yb = landscape.load_dataset("digits", n=50, seed=3)
    c, _ = landscape.load_dataset("digits", n=50, seed=4)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c)


def test_gaussian_labels_follow_a_linear_teacher():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, y = landscape.load_dataset("gaussian", in_shape=(1, 4, 4))
    xt, yt = landscape.load_dataset("gaussian", in_shape=(1, 4, 4), split="test")
    assert x.shape == (4096, 1, 4, 4) and xt.shape == (1024, 1, 4, 4)
    flat, flat_t = x.flatten(1).double().numpy(), xt.flatten(1).double().numpy()
    # Inputs are N(0, I): mean and std within a few standard errors (1/sqrt(65536)).
    assert abs(flat.mean()) < 0.02 and abs(flat.std() - 1) < 0.02
    # The teacher is the documented N(0, 1) matrix of seed 7: labels are its argmax.
    teacher = np.random.default_rng(7).standard_normal((16, 10))
    assert np.array_equal(y.numpy(), (flat @ teacher).argmax(1))
    # And a property any linear teacher has: the classes are cones through the origin,
    # so a linear classifier without intercept separates them, and what it learns on
    # the train split holds on the test split (random labels would give ~0.1).
    fit = LogisticRegression(C=1e4, fit_intercept=False, max_iter=2000).fit(flat, y.numpy())
    assert fit.score(flat, y.numpy()) > 0.97 and fit.score(flat_t, yt.numpy()) > 0.9
    # Ten random directions in 16 dimensions: every class holds a cone of inputs.
    assert np.bincount(y.numpy(), minlength=10).min() > 0.02 * len(y)


def test_missing_root_is_one_clear_error(tmp_path):
    with pytest.raises(LandscapeError, match="needs --data-root"):
        landscape.load_dataset("cifar10")
    with pytest.raises(LandscapeError, match="does not exist"):
        landscape.load_dataset("mnist", root=tmp_path / "nowhere")
    with pytest.raises(LandscapeError, match="not found under"):
        landscape.load_dataset("fashion-mnist", root=tmp_path)


def test_bad_dataset_arguments():
    with pytest.raises(LandscapeError, match="dataset: unknown value 'imagenet'"):
        landscape.load_dataset("imagenet")
    with pytest.raises(LandscapeError, match="asked for 5000"):
        landscape.load_dataset("digits", n=5000)


def _write_idx(path, array):
    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


def test_mnist_read_from_a_local_root(tmp_path):
    import numpy as np

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 28, 28))
    labels = np.arange(20) % 10
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    x, y = landscape.load_dataset("mnist", root=tmp_path, in_shape=(1, 28, 28))
    assert x.shape == (20, 1, 28, 28)
    assert torch.equal(y, torch.as_tensor(labels))
    expected = (images[3] / 255.0 - 0.1307) / 0.3081
    assert torch.allclose(x[3, 0], torch.as_tensor(expected, dtype=torch.float32), atol=1e-5)
