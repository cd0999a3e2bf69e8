"""Worklist results back to the archive: an SR and a heatmap capture per analysed PACS image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pacs.client import PacsClient
from pacs.errors import PacsError
from pacs.results import send_results
from pacs.settings import PacsSettings
from pacs.studies import ImageRef
from serving.client import ModelUnavailable
from webapp.lung_fields import segmenter
from webapp.worklist import WorklistRow

if TYPE_CHECKING:
    from model.classifier import Classifier


def sendable_studies(rows: list[WorklistRow]) -> list[str]:
    """Study keys with at least one analysed PACS image, in worklist order."""
    keys = [row.study_key for row in rows
            if isinstance(row.pacs_item, ImageRef) and row.prediction.refusal is None]
    return list(dict.fromkeys(keys))


def send_study_results(settings: PacsSettings, rows: list[WorklistRow], study_key: str,
                       predictor: Classifier) -> tuple[bool, str]:
    """Store an SR and a heatmap capture for each analysed image of one study.

    Returns (success, a message for the page): the count stored, or the archive's error.
    """
    images = [row for row in rows if row.study_key == study_key
              and isinstance(row.pacs_item, ImageRef) and row.prediction.refusal is None]
    if not images:
        return False, f"Study {study_key} has no analysed image to report."
    try:
        client = PacsClient(settings)
        for row in images:
            send_results(client, row.pacs_item, row.image, row.prediction, predictor,
                         segmenter())
    except (PacsError, ModelUnavailable) as error:
        return False, str(error)
    count = "1 image" if len(images) == 1 else f"{len(images)} images"
    return True, (f"Stored the AI report (SR) and heatmap of {count} in study {study_key}; "
                  "they appear in the PACS viewer with the study.")
