"""Loss and accuracy for targets that allow one class or a set of classes.

A partially labelled image ("pneumonia, type unknown") is trained with the likelihood of its
set: -log of the summed probabilities of the classes it allows. For a single class that is the
ordinary cross-entropy, so one loss serves every image.
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="cxr")
class SetCrossEntropy(keras.losses.Loss):
    """-(1 - s) log p(allowed set) - s * mean log p(class): label smoothing s towards uniform."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "set_cross_entropy",
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        probabilities = ops.clip(y_pred, EPSILON, 1.0)
        in_set = ops.sum(probabilities * ops.cast(y_true, probabilities.dtype), axis=-1)
        loss = -ops.log(ops.clip(in_set, EPSILON, 1.0))
        if self.label_smoothing:
            uniform = -ops.mean(ops.log(probabilities), axis=-1)
            loss = (1.0 - self.label_smoothing) * loss + self.label_smoothing * uniform
        return loss

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="cxr")
def set_accuracy(y_true, y_pred):
    """1 where the most probable class is one the target allows ("any of these")."""
    predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), ops.shape(y_pred)[-1])
    return ops.max(predicted * ops.cast(y_true, predicted.dtype), axis=-1)


def accuracy_metric() -> keras.metrics.Metric:
    """Named "accuracy" so the history keeps the keys the pages and the model card read."""
    return keras.metrics.MeanMetricWrapper(set_accuracy, name="accuracy")
