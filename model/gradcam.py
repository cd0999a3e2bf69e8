"""Grad-CAM: where the model looked for a class, and an overlay a person can read.

Follows the keras.io Grad-CAM example (a model mapping the input to the last conv
activations and the logits, a GradientTape, channel weights from pooled gradients, a ReLU,
a normalisation), with the care a clinic needs: the layer is named by the run's metadata,
a flat gradient gives an all-zero map instead of NaN, and the map is returned at the size of
the image the person uploaded.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf


def gradcam_heatmap(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """The Grad-CAM math for one image: (h, w, k) activations and gradients -> (h, w) in [0, 1].

    Each channel is weighted by its gradient averaged over space; the weighted sum keeps only
    what argues for the class (ReLU). An all-zero map stays zero rather than dividing by zero.
    """
    channel_weights = tf.reduce_mean(gradients, axis=(0, 1))
    heatmap = tf.nn.relu(tf.reduce_sum(activations * channel_weights, axis=-1))
    return tf.math.divide_no_nan(heatmap, tf.reduce_max(heatmap))


class GradCam:
    """A compiled Grad-CAM step on a whole (flat) model, one forward pass for map and logits.

    The same pass also returns the pooled features the logits layer reads, so the
    out-of-distribution gate (model.ood) costs no second pass.
    """

    def __init__(self, model: keras.Model, gradcam_layer: str, logits_layer: str) -> None:
        logits = model.get_layer(logits_layer)
        self._model = keras.Model(
            model.inputs[0],
            [model.get_layer(gradcam_layer).output, logits.output, logits.input],
        )
        image_shape = (1, *model.inputs[0].shape[1:])
        self._step = tf.function(
            self._tape_step,
            input_signature=[
                tf.TensorSpec(image_shape, tf.float32),
                tf.TensorSpec((), tf.int32),
            ],
        )

    def _tape_step(self, image: tf.Tensor, class_index: tf.Tensor):
        with tf.GradientTape() as tape:
            activations, logits, features = self._model(image, training=False)
            chosen = tf.where(class_index < 0, tf.argmax(logits[0], output_type=tf.int32),
                              class_index)
            class_score = tf.gather(logits[0], chosen)
        gradients = tape.gradient(class_score, activations)
        return gradcam_heatmap(activations[0], gradients[0]), logits[0], features[0], chosen

    def __call__(
        self, image: np.ndarray, class_index: int = -1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """One preprocessed (1, S, S, 3) image -> (heatmap at the layer's size, logits,
        pooled features, class). A negative class_index explains the predicted class.
        """
        heatmap, logits, features, chosen = self._step(
            tf.convert_to_tensor(image, tf.float32), tf.constant(class_index, tf.int32)
        )
        return heatmap.numpy(), logits.numpy(), features.numpy(), int(chosen)


def resize_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring a heatmap to the original (H, W), undoing the stretch to a square input."""
    height, width = shape
    resized = cv2.resize(heatmap.astype(np.float32), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)


def overlay(gray: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """Blend a colour heatmap onto the grayscale X-ray: RGB uint8 at the original size.

    opacity 0 gives the X-ray alone (as RGB), 1 the colour map alone.
    """
    if gray.ndim != 2 or gray.shape != heatmap.shape:
        raise ValueError(
            f"heatmap {heatmap.shape} must match the 2-D grayscale image {gray.shape}"
        )
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    levels = np.round(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    base = np.repeat(gray[..., None], 3, axis=-1)
    blended = (1.0 - opacity) * base + opacity * colours.astype(np.float32)
    return np.round(blended).astype(np.uint8)
