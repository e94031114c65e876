"""Reading the rows asked for from a NumPy ``.npz`` file, within the memory budget.

An ``.npz`` is a zip of ``.npy`` members, each a small header (dtype, shape)
before the raw array.  The header is read first, without the data, so a file
that declares more than the memory budget (:func:`landscape.memory.memory_budget`)
is refused before anything is decompressed.  A member stored uncompressed
(``np.savez``) is memory-mapped and only the rows asked for are read; a
compressed one (``np.savez_compressed``) is decompressed in chunks of
:data:`CHUNK` bytes up to the last row asked for, keeping only those rows.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from .errors import LandscapeError
from .memory import format_bytes, memory_budget

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header (30 bytes)
CHUNK = 2**26  # bytes decompressed at a time when only some rows are kept


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


def _streamed(zf, info, shape, dtype, offset: int, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` (sorted) of a compressed member, decompressed chunk by chunk."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    per_chunk = max(1, CHUNK // max(1, row_bytes))
    out = np.empty((len(index), *shape[1:]), dtype=dtype)
    done = 0
    with zf.open(info) as f:
        f.read(offset)  # the .npy header
        for start in range(0, int(index[-1]) + 1, per_chunk):
            stop = min(start + per_chunk, shape[0])
            buffer = f.read((stop - start) * row_bytes)
            if len(buffer) != (stop - start) * row_bytes:
                raise ValueError("truncated")
            block = np.frombuffer(buffer, dtype=dtype).reshape(stop - start, *shape[1:])
            wanted = index[(index >= start) & (index < stop)]
            out[done:done + len(wanted)] = block[wanted - start]
            done += len(wanted)
    return out


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
            whole = index is None or fortran
            need = row_bytes * shape[0] if whole else \
                row_bytes * len(index) + (0 if stored else max(CHUNK, row_bytes))
            if need > budget:
                raise LandscapeError(
                    f"dataset {label}: {key!r} declares shape {tuple(shape)} {dtype}, "
                    f"{format_bytes(row_bytes * shape[0])}; reading it needs "
                    f"{format_bytes(need)}, more than the memory budget of {format_bytes(budget)} "
                    "(lower --samples, or raise LANDSCAPE_MAX_MEMORY)")
            if whole:
                with zf.open(info) as f:
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
            elif stored:
                array = _mapped(path, info, shape, dtype, offset)
                out[key] = np.array(array[index])
                del array
            else:
                out[key] = _streamed(zf, info, shape, dtype, offset, index)
    out["__held__"] = held
    return out
