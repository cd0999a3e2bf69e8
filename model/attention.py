"""Where the model looked, against where the lungs are: one film's lung fields and the share of
its heatmap inside them, for every caller (CLI, Diagnose, Worklist, PDF, SR, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model.decode import DecodedImage
from model.lung_share import LOW_HEAT_IN_LUNGS, heat_in_lungs

if TYPE_CHECKING:
    from model.lungs import LungMask, LungSegmenter
    from model.predictor import Predictor

NO_LUNGS_MESSAGE = (
    "No lung field was found on this image (less than 5% of it looks like lung), so there is no "
    "lung outline and no share of attention inside the lungs. Check that it is a frontal chest "
    "X-ray; the finding above is not supported by a visible lung field.")


@dataclass(frozen=True)
class Attention:
    """One film's lung fields and the share of one class's heat inside them."""

    lungs: LungMask
    class_name: str
    heat_in_lungs: float | None  # None: no lung field found, or an all-zero heatmap

    @property
    def low(self) -> bool:
        return self.heat_in_lungs is not None and self.heat_in_lungs < LOW_HEAT_IN_LUNGS


def share(lungs: LungMask, heatmap: np.ndarray, class_name: str) -> Attention:
    """The share of ``heatmap`` inside ``lungs``; none when no lung field was found."""
    value = heat_in_lungs(heatmap, lungs) if lungs.found else None
    return Attention(lungs, class_name, None if value is None else round(value, 4))


def explain_in_lungs(predictor: Predictor, segmenter: LungSegmenter, image: DecodedImage,
                     class_name: str | None = None, age_group: str | None = None,
                     ) -> tuple[np.ndarray, Attention]:
    """The class's heatmap (default: predicted) and its share inside the film's lung fields;
    ``age_group`` as for Predictor.explain."""
    explanation = predictor.explain(image, class_name, age_group)
    lungs = segmenter.segment(image.gray)
    return explanation.heatmap, share(lungs, explanation.heatmap, explanation.class_name)


def in_words(attention: Attention) -> str:
    """The share as a radiologist reads it."""
    if attention.heat_in_lungs is None:
        return NO_LUNGS_MESSAGE if not attention.lungs.found else (
            "The heatmap is empty: nothing in the image argued for this finding.")
    return f"{attention.heat_in_lungs:.0%} of the model's attention was inside the lungs."


LOW_SHARE_WARNING = ("The model looked mostly outside the lungs for this finding: read it with "
                     "extra care.")
