"""What the app, the batch path and the PACS path ask of a model, apart from TensorFlow.

Two things answer it: ``model.predictor.Predictor`` (the model loaded in this process) and
``serving.client.ModelClient`` (a model server over HTTP, with $CXR_MODEL_URL). Callers type
against ``Classifier``, so they neither know which one they hold nor import TensorFlow to name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from model.age_groups import AgeReading
from model.decode import DecodedImage
from model.errors import ImageError
from model.explanation import Explanation
from model.prediction import Prediction
from model.run_dir import Metadata

# What ``admit`` gives back and ``classify`` takes, opaque to callers: the model's input for a
# loaded model, the image itself for a model server's client (the server runs the checks).
Admitted = Any


@runtime_checkable
class Classifier(Protocol):
    """A model that says, for each image, its calibrated probabilities or why it refuses it."""

    version: str
    classes: list[str]  # the model's class names, in its output order
    metadata: Metadata

    def admit(self, image: DecodedImage) -> Admitted:
        """The checks before the model; raises ImageError saying why an image is refused."""
        ...

    def known_age(self, image: DecodedImage, given: str | None) -> AgeReading | None:
        """What is known of an image's age group before the model: a person's choice ("adult",
        "child"; None or "auto": none), else its DICOM header's."""
        ...

    def classify(self, admitted: Sequence[Admitted | ImageError],
                 known_age: Sequence[AgeReading | None] | None = None) -> list[Prediction]:
        """``admit``'s outcomes -> one Prediction each, in order; a refusal given (or made by the
        checks after the model) becomes that image's refused Prediction. ``known_age``: each
        image's ``known_age``; None: the model estimates every age group."""
        ...

    def explain(self, image: DecodedImage, class_name: str | None = None,
                age_group: str | None = None) -> Explanation:
        """The prediction and the Grad-CAM of ``class_name`` (default: the predicted class);
        raises ImageError for a refused image."""
        ...
