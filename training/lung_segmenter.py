"""The lung segmenter's network: an ImageNet EfficientNet-Lite0 encoder cut at stride 16, with a
light U-Net decoder.

The encoder stops after ``block10`` (14 x 14 at 224): the stride-32 blocks and the 1280-channel
head add most of Lite0's weights and time and little to a lung outline. Skips come from the
last layer of each resolution. The model takes the same (S, S) uint8 grey image the classifier
sees and returns the lung probability per pixel, (S, S).
"""

from __future__ import annotations

import keras

from model.normalization import normalization_layer
from training import lite0

# (encoder layer, decoder filters after joining it), from the deepest skip to the finest.
ENCODER_OUTPUT = "block10_add"
SKIPS: tuple[tuple[str, int], ...] = (
    ("block7_add", 64),  # 14 x 14, 80 channels (same resolution as the output: joined first)
    ("block4_add", 48),  # 28 x 28
    ("block2_add", 32),  # 56 x 56
    ("block0_project_bn", 16),  # 112 x 112
)
OUTPUT_LAYER = "lung_probability"


def _decoder_step(x, skip, filters: int, name: str):
    if x.shape[1] != skip.shape[1]:
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    x = keras.layers.Concatenate(name=f"{name}_join")([x, skip])
    x = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                                     name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_lung_segmenter(image_size: int, weights: str = "imagenet") -> keras.Model:
    """The segmenter, ImageNet weights in the encoder (``weights="none"`` for tests), encoder
    BatchNorm frozen (inference mode: batches of a few films give poor statistics)."""
    inputs = keras.Input((image_size, image_size), dtype="uint8", name="gray")
    rgb = normalization_layer("lite0")(inputs)
    full = keras.Model(rgb, lite0.efficientnet_lite0(rgb, include_top=False))
    if weights != "none":
        lite0.load_lite0_imagenet_weights(full, None if weights == "imagenet" else weights)
    for layer in full.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    x = full.get_layer(ENCODER_OUTPUT).output
    for skip_name, filters in SKIPS:
        x = _decoder_step(x, full.get_layer(skip_name).output, filters, f"decode_{skip_name}")
    x = keras.layers.Conv2D(1, 1, name="lung_logit")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name="lung_logit_up")(x)
    x = keras.layers.Activation("sigmoid", dtype="float32")(x)
    outputs = keras.layers.Reshape((image_size, image_size), name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="lung_segmenter")
