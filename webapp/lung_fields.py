"""Lung fields as the pages use them: the shipped segmenter, and the share of heat inside the
lungs (model.lung_fields) for a batch outcome (Worklist rows), computed once per analysed image,
for its predicted class.

As a model server's client (CXR_MODEL_URL) the app runs no model at all, the segmenter
included, so there are no lung fields then; model.lungs (TensorFlow) is imported only when
the segmenter is really used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.batch import Classified
from records.settings import load_settings

if TYPE_CHECKING:
    from model.classifier import Classifier
    from model.lungs import LungSegmenter


def segmenter() -> LungSegmenter | None:
    """The shipped lung segmenter, or None where none ships or the model is a server's."""
    if load_settings().model_url:
        return None
    from model.lungs import shipped_segmenter

    return shipped_segmenter()


def heat_share(outcome: Classified, predictor: Classifier) -> float | None:
    """The predicted class's heat share in the lungs; None when refused, without a segmenter,
    or when no lung field was found."""
    lungs = segmenter()
    if lungs is None or outcome.prediction.refusal is not None or outcome.image is None:
        return None
    from model.lung_fields import explain_in_lungs

    return explain_in_lungs(predictor, lungs, outcome.image,
                            age_group=outcome.prediction.chosen_age_group)[1].heat_in_lungs
