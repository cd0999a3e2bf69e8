"""What the Diagnose page does with one upload, as plain functions tested without Streamlit.

Decode, classify and explain once per upload; the page then only re-blends the overlay
(opacity) or adds a Grad-CAM for another class, never re-running the classifier. What it keeps
between reruns is a ``DiagnoseState``.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from model.age_groups import not_assessed_note
from model.decode import DecodedImage, decode_image
from model.errors import ImageError
from model.labels import display_name
from model.overlay import overlay
from model.prediction import Prediction
from model.run_dir import RunFileError, if_present
from model.run_metrics import read_metrics
from model.site_validation import not_validated_notice
from webapp.lung_fields import segmenter

if TYPE_CHECKING:
    from model.classifier import Classifier
    from model.lung_fields import Attention, LungMask

NOTICE = (
    "Decision support, not a diagnosis: a radiologist must confirm every finding. "
    "The probabilities are the model's calibrated estimates, not clinical certainty."
)


@dataclass(frozen=True)
class Analysis:
    """One analysed upload: what the model said, where it looked, how long it took."""

    file_name: str
    image: DecodedImage
    prediction: Prediction  # never a refusal: a refused upload has no Analysis
    heatmaps: dict[str, np.ndarray]  # Grad-CAM by explained class, at the original size
    seconds: float
    analysed_at: str  # ISO 8601, UTC
    lungs: LungMask | None = None  # None where no lung segmenter ships

    def attention(self, class_name: str) -> Attention | None:
        """The share of an explained class's heat inside the lungs (None without a segmenter)."""
        if self.lungs is None:
            return None
        from model.lung_fields import share

        return share(self.lungs, self.heatmaps[class_name], class_name)

    # Shorthands for the page, read from the one prediction.
    @property
    def probabilities(self) -> dict[str, float]:
        return self.prediction.probabilities

    @property
    def predicted_class(self) -> str:
        return self.prediction.label

    @property
    def probability(self) -> float:
        """The calibrated probability of the predicted class."""
        return self.prediction.probability


def analyse(
    data: bytes, name: str, predictor: Classifier, class_name: str | None = None,
    age_group: str | None = None,
) -> Analysis:
    """Decode and analyse one upload, timed; raises ImageError for what cannot be analysed.

    ``age_group``: the person's choice ("adult", "child"); None: the DICOM header's, else the
    model's estimate (model.age_groups)."""
    analysed_at = datetime.now(UTC).isoformat(timespec="seconds")
    start = time.perf_counter()
    image = decode_image(data, name)
    explanation = predictor.explain(image, class_name, age_group)
    return Analysis(
        lungs=lung_fields(image),
        file_name=name,
        image=image,
        prediction=explanation.prediction,
        heatmaps={explanation.class_name: explanation.heatmap},
        seconds=time.perf_counter() - start,
        analysed_at=analysed_at,
    )


def lung_fields(image: DecodedImage) -> LungMask | None:
    """The image's lung fields from the shipped segmenter, or None where none runs here."""
    lungs = segmenter()
    return None if lungs is None else lungs.segment(image.gray)


def with_explanation(analysis: Analysis, predictor: Classifier, class_name: str) -> Analysis:
    """The same analysis with a Grad-CAM for ``class_name``; the probabilities stay as they were."""
    if class_name in analysis.heatmaps:
        return analysis
    explanation = predictor.explain(analysis.image, class_name,
                                    analysis.prediction.chosen_age_group)
    return replace(analysis, heatmaps={**analysis.heatmaps, class_name: explanation.heatmap})


# The patient's age group as a person chooses it on the pages -> model.age_groups' word.
AGE_CHOICES: dict[str, str | None] = {"Not known": None, "Adult": "adult", "Child": "child"}
AGE_CHOICE_HELP = ("The model reads a film with the head for the patient's age group. Not known: "
                   "the DICOM header's age, else the model's own estimate (shown with the result).")


def age_caption(prediction: Prediction) -> str | None:
    """How the film was read, in words, and the classes not assessed for that age group; None
    for a model without age heads."""
    age = prediction.age
    if age is None:
        return None
    words = f"Read as the film of {'a child' if age.group == 'child' else 'an adult'}"
    if age.source == "estimated":
        how = f"estimated by the model, {age.probability:.0%} sure"
    else:
        how = "as the reader chose" if age.source == "given" else "from the DICOM header's age"
    untrained = not_assessed_note(age)
    return f"{words} ({how})." + (f" {untrained}" if untrained else "")


def age_warnings(prediction: Prediction) -> tuple[str, ...]:
    """What the reader must check about the age group the film was read for: a choice that
    contradicts the header, an impossible header age, the model's confident disagreement."""
    return () if prediction.age is None else prediction.age.notes


def site_notice(site: str | None, run_dir: Path) -> str:
    """Where the model was validated: the site's name, or (``site`` None) the notice with the
    figure that matters from the run's external checks (model.site_validation)."""
    if site is not None:
        return f"Validated at this site ({site})."
    try:
        metrics = if_present(read_metrics, run_dir)
    except RunFileError:
        metrics = None
    return not_validated_notice(metrics)


@dataclass(frozen=True)
class DiagnoseState:
    """What the Diagnose page keeps between reruns: one upload's analysis, or the message saying
    why it could not be analysed (exactly one of the two)."""

    upload_id: str  # the upload's file id, or the worklist row's key
    analysis: Analysis | None = None
    error: str | None = None
    from_worklist: bool = False  # opened from a Worklist row rather than uploaded on Diagnose
    age_group: str | None = None  # the age group a person chose for it (None: not known)

    def __post_init__(self) -> None:
        if (self.analysis is None) == (self.error is None):
            raise ValueError("a DiagnoseState holds an analysis or an error, not both or neither")

    def is_for(self, upload_id: str, age_group: str | None = None) -> bool:
        """Whether this is the state of the Diagnose upload with this file id, read for this
        age group."""
        return (not self.from_worklist and self.upload_id == upload_id
                and self.age_group == age_group)


def state_for_upload(upload_id: str, data: bytes, name: str, predictor: Classifier,
                     age_group: str | None = None) -> DiagnoseState:
    """Analyse one upload; an image that cannot be analysed gives its message instead."""
    try:
        return DiagnoseState(upload_id, analysis=analyse(data, name, predictor,
                                                         age_group=age_group),
                             age_group=age_group)
    except ImageError as error:
        return DiagnoseState(upload_id, error=str(error), age_group=age_group)


def with_heatmap(state: DiagnoseState, predictor: Classifier, class_name: str) -> DiagnoseState:
    """The same state with a Grad-CAM for ``class_name`` in its analysis."""
    if state.analysis is None:
        raise ValueError(f"upload {state.upload_id} has no analysis to explain: {state.error}")
    return replace(state, analysis=with_explanation(state.analysis, predictor, class_name))


def _fit(image: np.ndarray, max_side: int | None) -> np.ndarray:
    height, width = image.shape[:2]
    scale = 1.0 if max_side is None else min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def display_image(analysis: Analysis, max_side: int | None = None) -> np.ndarray:
    """The decoded grayscale image, shrunk to ``max_side`` so the page stays fast."""
    return _fit(analysis.image.gray, max_side)


def overlay_image(
    analysis: Analysis, class_name: str, opacity: float, max_side: int | None = None,
    outline: bool = False,
) -> np.ndarray:
    """RGB uint8 Grad-CAM overlay for an explained class, optionally shrunk to ``max_side``
    and with the lung outline drawn (where a segmenter found one)."""
    heatmap = analysis.heatmaps[class_name]
    image = overlay(_fit(analysis.image.gray, max_side), _fit(heatmap, max_side), opacity)
    return with_outline(image, analysis.lungs) if outline else image


def with_outline(image: np.ndarray, lungs: LungMask | None) -> np.ndarray:
    """The image (grey or RGB) as RGB with the lung fields' border in white over a dark edge."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    if lungs is None or not lungs.found:
        return rgb
    thickness = max(2, round(max(rgb.shape[:2]) / 300))
    drawn = rgb.copy()
    drawn[lungs.outline(rgb.shape[:2], thickness + 2)] = (0, 0, 0)
    drawn[lungs.outline(rgb.shape[:2], thickness)] = (255, 255, 255)
    return drawn


def overlay_png(analysis: Analysis, class_name: str, opacity: float) -> bytes:
    """The full-resolution overlay as PNG bytes, for download."""
    buffer = io.BytesIO()
    Image.fromarray(overlay_image(analysis, class_name, opacity)).save(buffer, format="PNG")
    return buffer.getvalue()


def result_record(analysis: Analysis) -> dict:
    """What a clinician keeps of an analysis: the answer, its context, no pixels, no identifiers."""
    return {
        "file_name": analysis.file_name,
        "predicted_class": analysis.predicted_class,
        "predicted_display_name": display_name(analysis.predicted_class),
        "probability": analysis.probability,
        "probabilities": analysis.probabilities,
        "model_version": analysis.prediction.model_version,
        "validated_at_site": analysis.prediction.validated_at_site,
        "analysis_seconds": round(analysis.seconds, 4),
        "image": {
            "format": analysis.image.source_format,
            "width": int(analysis.image.gray.shape[1]),
            "height": int(analysis.image.gray.shape[0]),
            "acquisition": dict(analysis.image.facts),
        },
        "analysed_at": analysis.analysed_at,
        "notice": NOTICE,
    } | _heat_in_lungs(analysis)


def _heat_in_lungs(analysis: Analysis) -> dict:
    attention = analysis.attention(analysis.predicted_class)
    return {} if attention is None else {"heat_in_lungs": attention.heat_in_lungs}


def result_json(analysis: Analysis) -> bytes:
    """The result record as UTF-8 JSON bytes, for download."""
    return json.dumps(result_record(analysis), indent=2).encode("utf-8")

