"""What an explained prediction is, apart from the TensorFlow that computes it: the predictor
gives one, and so does the model server's client (serving.client), to the same callers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.prediction import Prediction


@dataclass(frozen=True)
class Explanation:
    """A prediction and where the model looked for one class, from the same forward pass."""

    prediction: Prediction  # calibrated probabilities by class name (metadata order), age group
    class_name: str  # the class explained
    heatmap: np.ndarray  # float32 (H, W) in [0, 1] at the original image size, never NaN
