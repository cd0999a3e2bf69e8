"""Grad-CAM and its kin: where the model looked for a class, and an overlay a person can read.

Follows the keras.io Grad-CAM example (a model mapping the input to the last conv
activations and the logits, a GradientTape, channel weights from pooled gradients, a ReLU,
a normalisation), with the care a clinic needs: the layer is named by the run's metadata,
a flat gradient gives an all-zero map instead of NaN, and the map is returned at the size of
the image the person uploaded. The predictor compiles ``forward_with_gradcam`` as its one
graph, so a plain prediction and an explained one come from the same computation.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf

from model.familiarity import LOOK_LAYER
from model.populations import age_probabilities, class_logits


def finer_layer(model: keras.Model, layer_name: str) -> str:
    """The last layer whose output has twice the spatial size of ``layer_name``'s (14 x 14 under
    a 7 x 7 last conv layer)."""
    size = model.get_layer(layer_name).output.shape[1]
    found = [layer.name for layer in model.layers
             if len(getattr(layer.output, "shape", ())) == 4 and layer.output.shape[1] == 2 * size]
    if not found:
        raise ValueError(f"no layer of {2 * size} x {2 * size} before {layer_name}")
    return found[-1]


def explanation_layer(model: keras.Model, gradcam_layer: str) -> str:
    """The layer the shown map is made at: the run's last conv layer, or the finer one (the
    last conv layer itself in a model that has none finer)."""
    if not SHOWN_AT_FINER_LAYER:
        return gradcam_layer
    try:
        return finer_layer(model, gradcam_layer)
    except ValueError:
        return gradcam_layer


def choose_look_layer(model: keras.Model, gradcam_layer: str) -> str | None:
    """LOOK_LAYER where the model has it; else, for another backbone (not measured), the last
    layer at twice the Grad-CAM layer's size; None if none. The look is model.familiarity's."""
    if LOOK_LAYER in {layer.name for layer in model.layers}:
        return LOOK_LAYER
    try:
        return finer_layer(model, gradcam_layer)
    except ValueError:
        return None


def gradcam_model(model: keras.Model, gradcam_layer: str, logits_layer: str,
                  look_layer: str | None = None) -> keras.Model:
    """The model the map needs: input -> (the explanation layer's activations, logits, pooled
    features[, ``look_layer``'s activations]); ``gradcam_layer`` is the run's last conv layer
    (its metadata).

    The pooled features (what the logits layer reads) feed the out-of-distribution gate
    (model.ood), and an early layer's activations the familiarity check (model.familiarity),
    so one forward pass serves the prediction, both checks and the map.
    """
    logits = model.get_layer(logits_layer)
    activations = model.get_layer(explanation_layer(model, gradcam_layer)).output
    looks = [model.get_layer(look_layer).output] if look_layer else []
    return keras.Model(model.inputs[0], [activations, logits.output, logits.input, *looks])


def forward_with_gradcam(
    cam_model: keras.Model, images: tf.Tensor, class_indices: tf.Tensor,
    populations: tf.Tensor, n_groups: int = 1,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(N, S, S) grey inputs -> (class logits, pooled features, heatmaps at the layer's size,
    explained classes, (N, groups) age-group estimates, (N, K) channel means of the look layer,
    K = 0 without one).

    A model with age heads (model.populations) gives one block of logits per age group: each
    image's class logits are its known group's block, or the marginal over the groups where
    ``populations`` is negative. Each image's map explains ``class_indices[i]``, or its
    predicted class where that is negative.
    """
    with tf.GradientTape() as tape:
        activations, raw_logits, features, *look = cam_model(images, training=False)
        n_classes = raw_logits.shape[-1] // n_groups
        logits = class_logits(raw_logits, populations, n_groups, n_classes)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        chosen = tf.where(class_indices < 0, predicted, class_indices)
        class_scores = tf.gather(logits, chosen, batch_dims=1)
    # The tape differentiates the sum of the scores; in inference mode an image's score depends
    # on its own activations only, so that gradient holds each image's own.
    gradients = tape.gradient(class_scores, activations)
    ages = age_probabilities(raw_logits, n_groups, n_classes)
    looks = (tf.reduce_mean(look[0], axis=(1, 2)) if look
             else tf.zeros((tf.shape(images)[0], 0), features.dtype))
    return (logits, features, CAM_METHODS[SHOWN_METHOD](activations, gradients), chosen, ages,
            looks)


def gradcam_heatmap(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """The Grad-CAM math: ([N,] h, w, k) activations and gradients -> ([N,] h, w) in [0, 1].

    Each channel is weighted by its gradient averaged over space; the weighted sum keeps only
    what argues for the class (ReLU). An all-zero map stays zero rather than dividing by zero.
    """
    channel_weights = tf.reduce_mean(gradients, axis=(-3, -2), keepdims=True)
    heatmap = tf.nn.relu(tf.reduce_sum(activations * channel_weights, axis=-1))
    return tf.math.divide_no_nan(heatmap, tf.reduce_max(heatmap, axis=(-2, -1), keepdims=True))


def _normalised(heatmap: tf.Tensor) -> tf.Tensor:
    heatmap = tf.nn.relu(heatmap)
    return tf.math.divide_no_nan(heatmap, tf.reduce_max(heatmap, axis=(-2, -1), keepdims=True))


def hirescam_heatmap(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """HiResCAM (Draelos & Carin 2020): the gradient times the activation at each position,
    summed over channels; no spatial averaging, so the map is faithful to the score."""
    return _normalised(tf.reduce_sum(activations * gradients, axis=-1))


def gradcam_plus_plus_heatmap(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018) with the usual exponential-score closed form:
    each position's positive gradient weighted by alpha = g^2 / (2 g^2 + sum(A) g^3)."""
    squared = tf.square(gradients)
    spatial_sum = tf.reduce_sum(activations, axis=(-3, -2), keepdims=True)
    alpha = tf.math.divide_no_nan(squared, 2.0 * squared + spatial_sum * squared * gradients)
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(-3, -2), keepdims=True)
    return _normalised(tf.reduce_sum(activations * weights, axis=-1))


def layercam_heatmap(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """LayerCAM (Jiang et al. 2021): each position's activations weighted by its own positive
    gradient, summed over channels."""
    return _normalised(tf.reduce_sum(activations * tf.nn.relu(gradients), axis=-1))


# The map the product shows, chosen by bench/explanations.py's rule (beats a random pixel order
# on both deletion and insertion, then the most heat inside the lungs): on the shipped model,
# Grad-CAM at the last conv layer (the figures: docs/RESULTS.md, Lung fields and maps).
SHOWN_METHOD = "gradcam"
SHOWN_AT_FINER_LAYER = False
# Every map method, by the name benchmarks and the run's choice use.
CAM_METHODS = {
    "gradcam": gradcam_heatmap,
    "hirescam": hirescam_heatmap,
    "gradcam++": gradcam_plus_plus_heatmap,
    "layercam": layercam_heatmap,
}


def resize_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring a heatmap to the original (H, W), undoing the stretch to a square input."""
    height, width = shape
    resized = cv2.resize(heatmap.astype(np.float32), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)
