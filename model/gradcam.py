"""Grad-CAM: where the model looked for a class, and an overlay a person can read.

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

from model.populations import age_probabilities, class_logits


def gradcam_model(model: keras.Model, gradcam_layer: str, logits_layer: str) -> keras.Model:
    """The model Grad-CAM needs: input -> (last conv activations, logits, pooled features).

    The pooled features (what the logits layer reads) feed the out-of-distribution gate
    (model.ood), so one forward pass serves the prediction, the gate and the map.
    """
    logits = model.get_layer(logits_layer)
    return keras.Model(
        model.inputs[0], [model.get_layer(gradcam_layer).output, logits.output, logits.input]
    )


def forward_with_gradcam(
    cam_model: keras.Model, images: tf.Tensor, class_indices: tf.Tensor,
    populations: tf.Tensor, n_groups: int = 1,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(N, S, S) grey inputs -> (class logits, pooled features, heatmaps at the layer's size,
    explained classes, (N, groups) age-group estimates).

    A model with age heads (model.populations) gives one block of logits per age group: each
    image's class logits are its known group's block, or the marginal over the groups where
    ``populations`` is negative. Each image's map explains ``class_indices[i]``, or its
    predicted class where that is negative.
    """
    with tf.GradientTape() as tape:
        activations, raw_logits, features = cam_model(images, training=False)
        n_classes = raw_logits.shape[-1] // n_groups
        logits = class_logits(raw_logits, populations, n_groups, n_classes)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        chosen = tf.where(class_indices < 0, predicted, class_indices)
        class_scores = tf.gather(logits, chosen, batch_dims=1)
    # The tape differentiates the sum of the scores; in inference mode an image's score depends
    # on its own activations only, so that gradient holds each image's own.
    gradients = tape.gradient(class_scores, activations)
    ages = age_probabilities(raw_logits, n_groups, n_classes)
    return logits, features, gradcam_heatmap(activations, gradients), chosen, ages


def gradcam_heatmap(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """The Grad-CAM math: ([N,] h, w, k) activations and gradients -> ([N,] h, w) in [0, 1].

    Each channel is weighted by its gradient averaged over space; the weighted sum keeps only
    what argues for the class (ReLU). An all-zero map stays zero rather than dividing by zero.
    """
    channel_weights = tf.reduce_mean(gradients, axis=(-3, -2), keepdims=True)
    heatmap = tf.nn.relu(tf.reduce_sum(activations * channel_weights, axis=-1))
    return tf.math.divide_no_nan(heatmap, tf.reduce_max(heatmap, axis=(-2, -1), keepdims=True))


def resize_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring a heatmap to the original (H, W), undoing the stretch to a square input."""
    height, width = shape
    resized = cv2.resize(heatmap.astype(np.float32), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)
