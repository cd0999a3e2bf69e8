"""The backbone's input normalisation as the model's first layer.

A run's model takes the stretched grey image that model.preprocess gives, (S, S) uint8, and
turns it into what its ImageNet backbone expects itself, so no caller can pair a model with
the wrong normalisation (the keras.io discipline: preprocessing inside the model). The layer is
registered, so loading a model.keras needs only this module imported (model.predictor does).
"""

from __future__ import annotations

import keras
from keras import ops

from model.input_normalizations import NORMALIZATIONS, Normalization

LAYER_NAME = "normalization"


@keras.saving.register_keras_serializable(package="cxr")
class GrayNormalization(keras.layers.Layer):
    """(N, S, S) grey image, values 0..255 -> (N, S, S, 3) float: the grey repeated to the
    backbone's three channels, then normalised as ``Normalization`` says."""

    def __init__(self, divisor: float, mean: tuple[float, ...], std: tuple[float, ...],
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.normalization = Normalization(float(divisor), tuple(mean), tuple(std))

    def call(self, gray):
        grey = ops.expand_dims(ops.cast(gray, self.compute_dtype), axis=-1)
        rgb = ops.repeat(grey, 3, axis=-1)
        normalization = self.normalization
        mean = ops.convert_to_tensor(normalization.mean, self.compute_dtype)
        std = ops.convert_to_tensor(normalization.std, self.compute_dtype)
        return (rgb / normalization.divisor - mean) / std

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape, 3)

    def get_config(self) -> dict:
        normalization = self.normalization
        return {**super().get_config(), "divisor": normalization.divisor,
                "mean": list(normalization.mean), "std": list(normalization.std)}


def normalization_layer(name: str) -> GrayNormalization:
    """The named backbone normalisation (a key of NORMALIZATIONS) as the first layer."""
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r} (known: {', '.join(NORMALIZATIONS)})")
    normalization = NORMALIZATIONS[name]
    return GrayNormalization(normalization.divisor, normalization.mean, normalization.std,
                             name=LAYER_NAME)
