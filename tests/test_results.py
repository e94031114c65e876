import numpy as np
import pytest
import xarray as xr

import landscape
from landscape.errors import LandscapeError
from landscape.results import PROVENANCE, encode_attrs


def _result(tiny_mlp, digits_small):
    x, y = digits_small
    return landscape.loss_slice(tiny_mlp, x, y, grid="-1:1:5", dataset="digits")


def test_round_trip_keeps_every_variable_and_attribute(tmp_path, tiny_mlp, digits_small):
    ds = _result(tiny_mlp, digits_small)
    path = landscape.save(ds, tmp_path / "r.nc")
    back = landscape.load(path)
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert back.loss_quasi_convex.dtype == bool
    assert set(encode_attrs(ds.attrs)) == set(back.attrs)
    for key, value in encode_attrs(ds.attrs).items():
        assert back.attrs[key] == value, key
    for key in PROVENANCE:
        assert key in back.attrs
    assert back.attrs["bias_scale"] == pytest.approx(0.1)
    for name in ds.variables:
        assert back[name].attrs == encode_attrs(ds[name].attrs), name


def test_attrs_encoding():
    enc = encode_attrs({"a": True, "b": None, "c": {"x": 1}, "d": [1, 2], "e": 1.5})
    assert enc == {"a": 1, "b": "null", "c": '{"x": 1}', "d": "[1, 2]", "e": 1.5}


def test_save_refuses_overwrite_and_leaves_no_temporary(tmp_path, tiny_mlp, digits_small):
    ds = _result(tiny_mlp, digits_small)
    path = landscape.save(ds, tmp_path / "r.nc")
    stamp = path.stat().st_mtime_ns
    with pytest.raises(LandscapeError, match="exists"):
        landscape.save(ds, path)
    assert path.stat().st_mtime_ns == stamp
    landscape.save(ds, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_crash_during_write_leaves_nothing(tmp_path, tiny_mlp, digits_small, monkeypatch):
    ds = _result(tiny_mlp, digits_small)

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(RuntimeError):
        landscape.save(ds, tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []


def test_load_validates(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"garbage")
    with pytest.raises(LandscapeError, match="not a readable netCDF"):
        landscape.load(bad)
    other = tmp_path / "other.nc"
    xr.Dataset({"v": ("x", np.arange(3))}, attrs={"kind": "pizza"}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(LandscapeError, match="not a landscape result"):
        landscape.load(other)
    with pytest.raises(LandscapeError, match="no such file"):
        landscape.load(tmp_path / "missing.nc")
    with pytest.raises(LandscapeError, match="kind"):
        landscape.save(xr.Dataset(attrs={"kind": "pizza"}), tmp_path / "p.nc")
