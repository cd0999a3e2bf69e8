"""A PyTorch state dict read into numpy without torch, by a restricted unpickler that builds
numpy arrays and refuses every global but the few a state dict needs, so a checkpoint cannot run
code. Both of torch's file formats: the zip (torch >= 1.6) and the legacy stream.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names a global outside the few a state dict needs; it is never loaded."""


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    """One torch storage; legacy files fill ``array`` only after the pickle has been read."""

    dtype: type
    numel: int
    array: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        """A copy of the tensor; offsets and strides are bounds-checked, as_strided is not."""
        flat = self.storage.array
        spans = [(size - 1) * step for size, step in zip(self.shape, self.stride, strict=True)]
        inside = self.offset >= 0 and min(self.stride, default=0) >= 0
        if not inside or (0 not in self.shape and self.offset + sum(spans) >= flat.size):
            raise ValueError("a tensor reaches outside its storage; the checkpoint is corrupt")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], self.shape, [step * itemsize for step in self.stride]
        )
        return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into numpy, refusing any other global."""

    def __init__(self, file: IO[bytes], load_storage: Callable[[tuple], _Storage], source: str):
        super().__init__(file)
        self._load_storage = load_storage
        self._source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load {self._source}: it names the global {module}.{name}, which a "
                "plain state dict never needs (the file may run code when unpickled)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"refusing {self._source}: unknown persistent id {pid!r}")
        if not isinstance(pid[1], _StorageType):
            raise UnsafeCheckpointError(f"refusing {self._source}: unknown storage {pid[1]!r}")
        return self._load_storage(pid)


def _materialize(state: object, source: str) -> dict[str, np.ndarray]:
    if not isinstance(state, dict) or not all(
        isinstance(value, _TensorRef) for value in state.values()
    ):
        raise ValueError(f"{source} does not hold a flat state dict of tensors")
    return {str(key): ref.materialize() for key, ref in state.items()}


def _read_zip_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """The torch >= 1.6 format: ``<archive>/data.pkl`` plus one raw file per storage."""
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path} is a zip but not a torch checkpoint (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in archive.namelist():
            if archive.read(prefix + "byteorder").decode() != "little":
                raise ValueError(f"{path} was saved big-endian; convert it first")

        def load_storage(pid: tuple) -> _Storage:
            _, storage_type, key, _location, numel = pid
            raw = archive.read(f"{prefix}data/{key}")
            array = np.frombuffer(raw, dtype=storage_type.dtype, count=numel)
            return _Storage(storage_type.dtype, numel, array)

        with archive.open(pickles[0]) as data_pickle:
            state = _StateDictUnpickler(
                io.BytesIO(data_pickle.read()), load_storage, str(path)
            ).load()
    return _materialize(state, str(path))


def _read_legacy_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """The torch < 1.6 format: magic, protocol, sys info and state dict pickles, then the list of
    storage keys, then each storage as an int64 element count followed by its raw bytes."""
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        _, storage_type, key, _location, numel, view = pid
        if view is not None:
            raise ValueError(f"{path}: storage views are not supported")
        return storages.setdefault(key, _Storage(storage_type.dtype, numel))

    with open(path, "rb") as file:

        def unpickle():
            return _StateDictUnpickler(file, load_storage, str(path)).load()

        _magic, _protocol, sys_info = unpickle(), unpickle(), unpickle()
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise ValueError(f"{path} is not a little-endian legacy torch checkpoint")
        state = unpickle()
        for key in unpickle():
            storage = storages[key]
            (numel,) = struct.unpack("<q", file.read(8))
            raw = file.read(numel * np.dtype(storage.dtype).itemsize)
            storage.array = np.frombuffer(raw, dtype=storage.dtype, count=numel)
    return _materialize(state, str(path))


def read_torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A flat state dict of tensors from a torch checkpoint, zip or legacy format, as numpy."""
    read = _read_zip_checkpoint if zipfile.is_zipfile(path) else _read_legacy_checkpoint
    return read(path)
