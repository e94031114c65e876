"""Reading the rows asked for from a NumPy ``.npz`` file, within the memory budget.

An ``.npz`` is a zip of ``.npy`` members, each a small header (dtype, shape)
before the raw array.  The header is read first, without the data, so a file
that declares more than the memory budget (:func:`landscape.memory.memory_budget`)
is refused before anything is decompressed.  A member stored uncompressed
(``np.savez``) is memory-mapped and only the rows asked for are read; a
compressed one (``np.savez_compressed``) must be decompressed whole, so the
whole array must fit the budget.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from .errors import LandscapeError
from .memory import format_bytes, memory_budget

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header (30 bytes)


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    """``(shape, fortran_order, dtype, offset of the data in the member)``."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        return shape, fortran, dtype, f.tell()


def _mapped(path: Path, info: zipfile.ZipInfo, shape, dtype, offset: int) -> np.ndarray:
    """The uncompressed member ``info`` as a read-only memory map."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1] + offset
    if start + int(np.prod(shape)) * dtype.itemsize > path.stat().st_size:
        raise ValueError("truncated")
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)


def read_rows(path: Path, label: str, keys: tuple[str, ...], rows) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of ``path`` that it holds, each cut to ``rows(n)`` (an
    index array, or ``None`` for all) where ``n`` is the first array's length.
    ``label`` names the file in messages."""
    budget = memory_budget()
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf:
        members = {info.filename[:-4]: info for info in zf.infolist()
                   if info.filename.endswith(".npy")}
        if not members and zf.infolist():
            raise ValueError("no .npy members")
        held = sorted(members)
        index, length = None, None
        for key in keys:
            if key not in members:
                continue
            info = members[key]
            shape, fortran, dtype, offset = _header(zf, info)
            if dtype.hasobject:
                raise ValueError("object arrays")
            if not shape:
                out[key] = np.asarray(np.lib.format.read_array(zf.open(info)))
                continue
            if length is None:
                length, index = shape[0], rows(shape[0])
            elif shape[0] != length:
                raise LandscapeError(f"dataset {label}: {shape[0]} {key!r} for {length} {keys[0]!r}")
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            stored = info.compress_type == zipfile.ZIP_STORED and not fortran
            need = row_bytes * (shape[0] if index is None or not stored else len(index))
            if need > budget:
                whole = "" if stored else (" (compressed: it must be read whole; np.savez "
                                           "stores it uncompressed, read row by row)")
                raise LandscapeError(
                    f"dataset {label}: {key!r} declares shape {tuple(shape)} {dtype}, "
                    f"{format_bytes(row_bytes * shape[0])}{whole}; reading it needs "
                    f"{format_bytes(need)}, more than the memory budget of {format_bytes(budget)} "
                    "(lower --samples, or raise LANDSCAPE_MAX_MEMORY)")
            if stored:
                array = _mapped(path, info, shape, dtype, offset)
                out[key] = np.array(array if index is None else array[index])
                del array
            else:
                with zf.open(info) as f:
                    array = np.lib.format.read_array(f, allow_pickle=False)
                out[key] = array if index is None else array[index]
    out["__held__"] = held
    return out
