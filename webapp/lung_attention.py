"""The share of heat inside the lungs for a batch outcome (Worklist rows), where a segmenter
ships; computed once per analysed image, for its predicted class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.attention import explain_in_lungs
from model.batch import Classified
from model.lungs import shipped_segmenter

if TYPE_CHECKING:
    from model.predictor import Predictor


def heat_share(outcome: Classified, predictor: Predictor) -> float | None:
    """The predicted class's heat share in the lungs; None when refused, without a segmenter,
    or when no lung field was found."""
    segmenter = shipped_segmenter()
    if segmenter is None or outcome.error is not None or outcome.image is None:
        return None
    return explain_in_lungs(predictor, segmenter, outcome.image)[1].heat_in_lungs
