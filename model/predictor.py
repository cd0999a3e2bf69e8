"""The predictor: a run directory loaded once, giving calibrated probabilities and Grad-CAM.

Everything the model needs to know about its inputs (size, class order, the Grad-CAM layer,
the temperature, the out-of-distribution gate) comes from the run directory, never from this
code; the model normalises its input itself (model.normalization), so it takes the stretched
grey image. "Is this image accepted?" has one answer, here: ``admit`` (the DICOM
header, the pixels) before the model, ``classify`` (the features) after it; a refused
image gets the message saying why instead of probabilities. One compiled graph gives the
logits, the gate's features and the Grad-CAM map, so every caller sees the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model import normalization  # noqa: F401  (registers the layer load_model meets first)
from model.age_groups import (
    AGE_GROUP_WORDS,
    AgeReading,
    age_group_index,
    known_age,
    resolved_age,
)
from model.calibration import softmax
from model.coverage import untrained_classes
from model.decode import DecodedImage
from model.errors import ImageError, ModelLoadError
from model.explanation import Explanation
from model.familiarity import Familiarity
from model.gradcam import (
    choose_look_layer,
    forward_with_gradcam,
    gradcam_model,
    resize_heatmap,
)
from model.ood import OodGate, check_acquisition
from model.prediction import Prediction
from model.preprocess import resize_gray
from model.run_dir import (
    DEFAULT_RUN_DIR,
    MODEL_FILE,
    Metadata,
    RunFileError,
    if_present,
    read_calibration,
    read_metadata,
)
from model.site_validation import validated_at_site


class Predictor:
    """A trained model with its metadata, calibration and out-of-distribution gate: the
    ``model.classifier.Classifier`` loaded in this process.

    Load once, call many times. ``ood`` is the gate (``ood.enabled``, and ``ood.info``: its
    limits and figures, or why it is off).
    """

    def __init__(self, model: keras.Model, metadata: Metadata, temperature: float,
                 ood: OodGate | None = None, familiarity: Familiarity | None = None) -> None:
        self.model = model  # the Keras model, for tools that read its layers (training.adapt)
        self.metadata = metadata
        self.classes: list[str] = list(metadata.classes)
        self.version = metadata.version
        self.image_size = metadata.image_size
        self.temperature = temperature
        self.ood = ood or OodGate.off("no gate was given to this predictor")
        self.familiarity = familiarity  # None: the run has no feature bank
        self.age_heads: list[str] = list(metadata.age_heads or [])
        self.untrained = untrained_classes(metadata) if self.age_heads else {}
        n_groups = max(1, len(self.age_heads))
        # The familiarity check's layer: the bank's, else the one a new bank would use (so
        # that training.feature_bank can read looks for a run without a bank yet).
        if familiarity is not None and familiarity.layer not in {x.name for x in model.layers}:
            raise ModelLoadError(f"the feature bank's looks come from layer "
                                 f"{familiarity.layer!r}, which the model lacks: rebuild it")
        self.look_layer = (familiarity.layer if familiarity is not None
                           else choose_look_layer(model, metadata.gradcam_layer))
        cam_model = gradcam_model(model, metadata.gradcam_layer, metadata.logits_layer,
                                  self.look_layer)
        # The one compiled graph: logits, pooled features and Grad-CAM maps from one pass.
        self._forward = tf.function(
            lambda images, class_indices, populations: forward_with_gradcam(
                cam_model, images, class_indices, populations, n_groups),
            input_signature=[
                tf.TensorSpec((None, self.image_size, self.image_size), tf.uint8),
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((None,), tf.int32),
            ],
        )
        feature_size = model.get_layer(metadata.logits_layer).input.shape[-1]
        if self.ood.enabled and self.ood.feature_size != feature_size:
            raise ModelLoadError(f"the out-of-distribution gate was fitted on "
                                 f"{self.ood.feature_size} features, the model has {feature_size}")

    @classmethod
    def load(cls, run_dir: str | Path = DEFAULT_RUN_DIR) -> Predictor:
        """Read a run directory (model.run_dir): the metadata, the calibration and the gate
        (both optional: uncalibrated, ungated without them) and the model."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise ModelLoadError(f"no model directory at {run_dir}")
        model_path = run_dir / MODEL_FILE
        if not model_path.is_file():
            raise ModelLoadError(f"{run_dir} is not a run directory: {MODEL_FILE} is missing")
        try:
            metadata = read_metadata(run_dir)
            calibration = if_present(read_calibration, run_dir)
            ood = OodGate.load(run_dir)
            familiarity = Familiarity.load(run_dir)
        except RunFileError as error:
            raise ModelLoadError(str(error)) from error
        temperature = 1.0 if calibration is None else calibration.temperature
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as error:  # Keras raises many types for a bad file; all mean the same
            raise ModelLoadError(f"{model_path} cannot be loaded: {error}") from error
        for key in ("gradcam_layer", "logits_layer"):
            if getattr(metadata, key) not in {layer.name for layer in model.layers}:
                raise ModelLoadError(f"{model_path} has no layer {getattr(metadata, key)!r} "
                                     f"({key})")
        expected = (None, metadata.image_size, metadata.image_size)
        if len(model.inputs) != 1 or tuple(model.inputs[0].shape) != expected:
            shapes = [tuple(image.shape) for image in model.inputs]
            raise ModelLoadError(f"{model_path} takes {shapes}, the metadata says {expected}")
        n_logits = model.get_layer(metadata.logits_layer).output.shape[-1]
        n_expected = len(metadata.classes) * max(1, len(metadata.age_heads or []))
        if n_logits != n_expected:
            raise ModelLoadError(f"{model_path} has {n_logits} outputs for "
                                 f"{len(metadata.classes)} classes in the metadata"
                                 + (f" x {len(metadata.age_heads)} age groups"
                                    if metadata.age_heads else ""))
        return cls(model, metadata, temperature, ood, familiarity)

    def preprocess(self, gray: np.ndarray) -> np.ndarray:
        """A decoded grayscale image -> this model's input, the (S, S) uint8 stretched grey
        image, exactly as in training."""
        return resize_gray(gray, self.image_size)

    def admit(self, image: DecodedImage | np.ndarray) -> np.ndarray:
        """The checks before the model: the DICOM header, then the pixels as the model sees them
        (blank, noise). Returns the (S, S) model input; raises ImageError saying why not.

        A bare (H, W) array is a decoded image without its file: it has no header to check.
        """
        if isinstance(image, DecodedImage):
            check_acquisition(image)
            image = image.gray
        resized = self.preprocess(image)
        self.ood.check_pixels(resized)
        return resized

    def logits(self, batch: np.ndarray, age_groups: Sequence[str | None] | None = None
               ) -> np.ndarray:
        """(N, S, S) preprocessed inputs -> (N, C) class logits, through the compiled graph;
        for each image's age group where known ("adult", "child"), else the marginal."""
        return self.logits_and_features(batch, age_groups)[0]

    def logits_and_features(self, batch: np.ndarray,
                            age_groups: Sequence[str | None] | None = None,
                            ) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) inputs -> ((N, C) logits, (N, D) pooled features), one compiled pass.

        Not gated: for evaluation and fitting the gate.
        """
        logits, features, _, _, _, _ = self._run(batch, populations=self._indices(
            age_groups or [None] * len(batch)))
        return logits, features

    def features_and_looks(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) inputs -> ((N, D) pooled features, (N, K) looks: the look layer's channel
        means, model.familiarity; K = 0 for a model without that layer), one compiled pass."""
        _, features, _, _, _, looks = self._run(batch)
        return features, looks

    def classify(
        self, admitted: Sequence[np.ndarray | ImageError],
        known_age: Sequence[AgeReading | None] | None = None,
    ) -> list[Prediction]:
        """The model and the check after it (model.classifier): ``admit``'s inputs -> each image's
        Prediction, or the feature check's refusal; refusals given are passed on in place.

        One forward pass for the whole batch. Each accepted image is read for its ``known_age``
        (model.age_groups: the DICOM header's or a person's), else the model's own estimate, and
        says whether it looks like the films the model was trained or adapted on
        (model.familiarity).
        """
        known = list(known_age) if known_age is not None else [None] * len(admitted)
        predictions = [Prediction.refused(str(item), self.version)
                       if isinstance(item, ImageError) else None for item in admitted]
        rows = [index for index, item in enumerate(admitted) if not isinstance(item, ImageError)]
        if not rows:
            return predictions
        chosen = [known[index] for index in rows]
        batch = np.stack([admitted[index] for index in rows])
        logits, features, _, _, ages, looks = self._run(
            batch, populations=self._indices([age.group if age else None for age in chosen]))
        gated = self._gate_features(logits, features, batch)
        familiar = self._familiar(looks)
        for index, outcome, given, estimate, usual, row in zip(rows, gated, chosen, ages,
                                                              familiar, features, strict=True):
            predictions[index] = (
                Prediction.refused(str(outcome), self.version) if isinstance(outcome, ImageError)
                else self._prediction(outcome, self._age_reading(given, estimate), usual, row))
        return predictions

    def known_age(self, image: DecodedImage | np.ndarray, given: str | None
                  ) -> AgeReading | None:
        """What is known of an image's age group before the model (a person's choice, else
        its DICOM header's), checked against the groups this model has heads for."""
        header, problem = ((image.age_group, image.age_problem) if isinstance(image, DecodedImage)
                           else (None, None))
        reading = known_age(header, given, problem)
        if reading is not None and reading.group is not None and self.age_heads:
            age_group_index(reading.group, self.age_heads)  # a name this model knows
        return reading

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: softmax of the logits divided by the fitted temperature."""
        return softmax(logits, self.temperature)

    def predict(self, image: DecodedImage | np.ndarray) -> dict[str, float]:
        """One decoded image -> calibrated probabilities by class name (``admit``, then
        ``classify``); ImageError if refused."""
        (prediction,) = self.classify([self.admit(image)], [self.known_age(image, None)])
        if prediction.refusal is not None:
            raise ImageError(prediction.refusal)
        return prediction.probabilities

    def explain(
        self, image: DecodedImage | np.ndarray, class_name: str | None = None,
        age_group: str | None = None,
    ) -> Explanation:
        """Probabilities and a Grad-CAM heatmap at the image's size; default: predicted class.

        Accepted or refused exactly as by ``classify``, from the same compiled pass;
        ``age_group`` as for ``known_age``.
        """
        if class_name is not None and class_name not in self.classes:
            raise ValueError(f"unknown class {class_name!r}; the model knows {self.classes}")
        class_index = -1 if class_name is None else self.classes.index(class_name)
        gray = image.gray if isinstance(image, DecodedImage) else image
        given = self.known_age(image, age_group)
        batch = self.admit(image)[None]
        logits, features, heatmaps, chosen, ages, looks = self._run(
            batch, class_index, self._indices([given.group if given else None]))
        (outcome,) = self._gate_features(logits, features, batch)
        if isinstance(outcome, ImageError):
            raise outcome
        return Explanation(
            prediction=self._prediction(outcome, self._age_reading(given, ages[0]),
                                       self._familiar(looks)[0], features[0]),
            class_name=self.classes[chosen[0]],
            heatmap=resize_heatmap(heatmaps[0], gray.shape),
        )

    def warm_up(self) -> None:
        """Trace and run the compiled graph once, so the first person is not kept waiting.

        Straight through the graph: the gate would rightly refuse the blank image used here.
        """
        self._run(np.full((1, self.image_size, self.image_size), 128, np.uint8))

    def _run(
        self, batch: np.ndarray, class_index: int = -1, populations: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The compiled graph: (class logits, features, heatmaps, explained classes, age-group
        estimates, looks), as numpy; ``populations``: each image's age-head index, -1 to
        estimate."""
        class_indices = tf.fill([len(batch)], tf.constant(class_index, tf.int32))
        if populations is None:
            populations = np.full(len(batch), -1, np.int32)
        outputs = self._forward(tf.convert_to_tensor(batch, tf.uint8), class_indices,
                                tf.convert_to_tensor(populations, tf.int32))
        return tuple(output.numpy() for output in outputs)

    def _indices(self, groups: Sequence[str | None]) -> np.ndarray:
        """Age-group names -> this model's head indices (-1: not known, or no age heads)."""
        if not self.age_heads:
            return np.full(len(groups), -1, np.int32)
        return np.array([age_group_index(group, self.age_heads) for group in groups], np.int32)

    def _familiar(self, looks: np.ndarray) -> list[bool | None]:
        """Each film's familiarity flag (model.familiarity); None for a run without a bank."""
        if self.familiarity is None:
            return [None] * len(looks)
        return self.familiarity.familiar(looks).tolist()

    def _age_reading(self, given: AgeReading | None, estimate: np.ndarray
                     ) -> AgeReading | None:
        """The known age group, else the model's estimate (model.age_groups.resolved_age);
        None without age heads (a model that cannot read a film by age group does not report
        one)."""
        if not self.age_heads:
            return None
        return resolved_age(given, {AGE_GROUP_WORDS.get(name, name): float(p)
                                    for name, p in zip(self.age_heads, estimate, strict=True)},
                            self.untrained)

    def _gate_features(self, logits: np.ndarray, features: np.ndarray, batch: np.ndarray
                       ) -> list[np.ndarray | ImageError]:
        """The feature check on each image of the (N, S, S) ``batch``: its calibrated
        probabilities, or the refusal naming what looked wrong."""
        outcomes: list[np.ndarray | ImageError] = []
        for probabilities, row, resized in zip(self.probabilities(logits), features, batch,
                                               strict=True):
            try:
                self.ood.check(row, resized)
            except ImageError as refusal:
                outcomes.append(refusal)
            else:
                outcomes.append(probabilities)
        return outcomes

    def _prediction(self, probabilities: np.ndarray, age: AgeReading | None = None,
                    familiar: bool | None = None, features: np.ndarray | None = None
                    ) -> Prediction:
        """One image's row of calibrated probabilities (and its pooled features) as the value
        every caller passes on."""
        return Prediction.of({name: float(p) for name, p in zip(self.classes, probabilities,
                                                                strict=True)},
                             self.version, age, familiar, validated_at_site(self.metadata),
                             features)
