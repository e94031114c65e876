"""Loss-grid points on several CPU streams: the same values bit for bit, in order,
with the model left alone; channels-last max pooling equal to torch's own."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import landscape
from landscape.grids import ChannelsLastMaxPool2d, LossGrid
from landscape.slicing import loss_slice
from landscape.streams import evaluate_on_streams, split_ranges


def _resnet():
    """A small convolutional network with what ResNet-18 has on the way: BatchNorm and
    max pooling (the private copies pool channels-last)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.MaxPool2d(3, 2, 1), nn.Conv2d(6, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    x, y = landscape.load_dataset("digits", n=24, in_shape=(1, 8, 8), seed=0)
    return model, x, y


@pytest.mark.parametrize("bn", ["recompute", "batch"])
def test_streams_give_the_one_stream_values_bit_for_bit(bn):
    torch.set_num_threads(1)  # every stream then has one intra-op thread, as one stream has
    model, x, y = _resnet()
    kw = dict(dims=2, grid="-1:1:5", seed=1, bn=bn, batch_size=8)
    one = loss_slice(model, x, y, streams=1, **kw)
    assert one.attrs["engine"] == "loop" and one.attrs["streams"] == 1
    for streams in (2, 3):
        many = loss_slice(model, x, y, streams=streams, **kw)
        assert many.attrs["streams"] == streams
        np.testing.assert_array_equal(one.loss.values, many.loss.values)  # max diff 0
        np.testing.assert_array_equal(one.accuracy.values, many.accuracy.values)
    assert np.ptp(one.loss.values) > 0.1  # a surface: a permuted grid would not be equal
    assert torch.get_num_threads() == 1
    # The private copies pool channels-last; the caller's model keeps its own module.
    assert type(model[3]) is nn.MaxPool2d


def test_streams_by_default_one_per_thread_on_the_cpu_loop_engine():
    torch.set_num_threads(2)
    model, x, y = _resnet()
    ds = loss_slice(model, x, y, dims=1, grid="-1:1:5", bn="eval", batch_size=8)
    assert ds.attrs["streams"] == 2 and torch.get_num_threads() == 2
    mlp = landscape.build_model("mlp", init="xavier", seed=0)  # vmap: one stream
    xm, ym = landscape.load_dataset("digits", n=16, in_shape=mlp.in_shape)
    assert loss_slice(mlp, xm, ym, dims=1, grid="-1:1:5").attrs["streams"] == 1
    # Three points: one stream (at most one per two points).
    assert loss_slice(model, x, y, dims=1, grid="-1:1:3", bn="eval").attrs["streams"] == 1


def test_bad_streams_are_refused_before_the_work(monkeypatch):
    import landscape.slicing

    model, x, y = _resnet()
    mlp = landscape.build_model("mlp", init="xavier", seed=0)
    xm, ym = landscape.load_dataset("digits", n=16, in_shape=mlp.in_shape)
    with monkeypatch.context() as patch:  # not even the model's view (statistics) is made
        patch.setattr(landscape.slicing, "model_view", lambda *a, **k: pytest.fail("work done"))
        with pytest.raises(landscape.LandscapeError, match="streams: must be >= 1, got 0"):
            loss_slice(model, x, y, dims=1, grid="-1:1:5", streams=0)
    with pytest.raises(landscape.LandscapeError, match="only the loop engine .* not vmap"):
        loss_slice(mlp, xm, ym, dims=1, grid="-1:1:5", streams=2)
    with pytest.raises(landscape.LandscapeError, match="not a sharded grid"):
        loss_slice(model, x, y, dims=1, grid="-1:1:5", streams=2, scheduler="local:2")
    with pytest.raises(landscape.LandscapeError, match="loss slice on 1,?000,?000 streams"):
        loss_slice(model, x, y, dims=1, grid="-1:1:5", streams=10**6)


class _Grid:
    """Values of a known function of the point index; one range raises."""

    def __init__(self, bad=None):
        self.bad, self.seen = bad, None

    def evaluate(self, start, stop):
        if self.seen is None:
            self.seen = torch.get_num_threads()
        if start == self.bad:
            raise ValueError(f"range {start} broke")
        return np.arange(start, stop) ** 2, self.seen


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, k):
        self.n += k


def test_ranges_come_back_in_order_on_a_share_of_the_threads_and_errors_reach_the_caller():
    torch.set_num_threads(2)
    ranges = split_ranges([(0, 40), (40, 101)], 3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 101 and len(ranges) > 6
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    bar = _Bar()
    parts = evaluate_on_streams(_Grid(), ranges, 2, bar)
    assert np.array_equal(np.concatenate([p[0] for p in parts]), np.arange(101) ** 2)
    assert {p[1] for p in parts} == {1} and bar.n == 101  # 2 threads / 2 streams
    assert torch.get_num_threads() == 2  # restored
    with pytest.raises(ValueError, match=f"range {ranges[3][0]} broke"):
        evaluate_on_streams(_Grid(bad=ranges[3][0]), ranges, 2, _Bar())
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("args", [dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=2),
                                  dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)),
                                  dict(kernel_size=3, stride=2, ceil_mode=True),
                                  dict(kernel_size=2, dilation=2, padding=1)])
def test_channels_last_max_pooling_equals_torchs_bit_for_bit(args):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, 11, 13, generator=gen)
    x[0, 0, 1, 1], x[1, 2, 3, 3], x[2, 3, 4, 5] = float("nan"), float("inf"), -float("inf")
    x[3, :, 2:6, 2:6] = 0.0  # ties
    pool = ChannelsLastMaxPool2d(**args)
    got, want = pool(x), F.max_pool2d(x, **args)
    assert got.is_contiguous() and got.shape == want.shape
    assert torch.equal(got.isnan(), want.isnan()) and want.isnan().any()
    assert torch.equal(got.nan_to_num(0.5), want.nan_to_num(0.5))
    assert torch.equal(pool(x[0]).nan_to_num(0.5), F.max_pool2d(x[0], **args).nan_to_num(0.5))  # 3-D


def test_stream_copies_share_the_stacked_directions_and_pickles_carry_none():
    import copy
    import pickle

    from landscape.directions import parameter_directions
    from landscape.losses import Objective

    model, x, y = _resnet()
    dirs = parameter_directions(model, "filter", 2, seed=0)
    coeffs = np.array([[0.0, 0.0], [0.5, -0.5], [1.0, 1.0]])
    grid = LossGrid(model, x, y, dirs, coeffs, 8, "loop", Objective(model))
    one, two = copy.copy(grid), copy.copy(grid)
    a, b = one.evaluate(0, 2), two.evaluate(1, 3)
    assert one._shared.get(None)["stacked"] is two._shared.get(None)["stacked"]  # built once
    shipped = pickle.loads(pickle.dumps(grid))  # as a Dask task receives it
    assert shipped._shared is not grid._shared and shipped._shared._value is None
    c = shipped.evaluate(0, 3)
    np.testing.assert_array_equal(np.concatenate([a[0], b[0][1:]]), c[0])
