"""The classifier: a backbone, a small new head, and the freeze/unfreeze rules of the two stages."""

from __future__ import annotations

import keras

from model.normalization import normalization_layer
from training.backbones import BackboneSpec, top_block_layers

HEAD_LAYERS = ("head_pool", "head_dropout", "logits", "probabilities")


def build_classifier(
    spec: BackboneSpec, weights: str, image_size: int, n_classes: int, dropout: float
) -> tuple[keras.Model, str]:
    """One flat functional model: the stretched grey image (S, S) uint8 -> the backbone's
    normalisation -> backbone -> pool -> dropout -> logits -> softmax."""
    gray = keras.Input((image_size, image_size), dtype="uint8", name="image")
    normalized = normalization_layer(spec.normalization)(gray)
    features, weights_source = spec.build(normalized, weights)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    dropped = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    # Zero-initialised: training starts from uniform probabilities (loss ln 4), and the first
    # steps move the head toward the class means, so even a short frozen stage ranks well.
    logits = keras.layers.Dense(n_classes, kernel_initializer="zeros", name="logits")(dropped)
    probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(gray, probabilities, name=f"cxr_{spec.name}"), weights_source


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of the backbone: all but the input and the head."""
    return [
        layer for layer in model.layers
        if layer.name not in HEAD_LAYERS and not isinstance(layer, keras.layers.InputLayer)
    ]


def freeze_backbone(model: keras.Model) -> None:
    """Stage 1: only the head learns; frozen BatchNorm layers run in inference mode (Keras 3)."""
    for layer in backbone_layers(model):
        layer.trainable = False


def unfreeze_backbone(model: keras.Model, spec: BackboneSpec, top_blocks: int) -> int:
    """Stage 2: unfreeze all (top_blocks=0) or the top N blocks; BatchNorm stays frozen.

    As in the Keras transfer-learning guide, BatchNorm statistics stay in inference mode
    while fine-tuning, so small batches of X-rays cannot wreck the ImageNet statistics.
    Returns how many layers were unfrozen.
    """
    layers = backbone_layers(model)
    chosen = (
        {layer.name for layer in layers}
        if top_blocks <= 0
        else top_block_layers([layer.name for layer in layers], spec, top_blocks)
    )
    unfrozen = 0
    for layer in layers:
        trainable = layer.name in chosen and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += trainable
    return unfrozen
