"""The worklist: many images at once (uploads, a .zip, or a PACS query) through the model, as
rows. Plain functions, tested without Streamlit.

Each person's action is one function (``triage_uploads``, ``triage_pacs``, ``open_row`` here;
``worklist_results.send_study_results``), so an audit record can be added at one place per
action. Beside it: ``worklist_uploads`` (files and zips), ``worklist_table`` (sort, table, CSV).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from PIL import Image

from model.batch import Classified, classify
from model.bounded_zip import ZipLimits
from model.decode import DecodedImage, decode_image
from model.limits import DEFAULT_LIMITS
from model.prediction import Prediction
from pacs.client import PacsClient
from pacs.studies import StudyQuery
from pacs.triage import StudyProblem, WorkItem, triage, work_items
from records.settings import Settings
from webapp.analysis import Analysis, DiagnoseState, lung_fields, with_explanation
from webapp.lung_fields import heat_share
from webapp.worklist_uploads import Upload, expected_images, iter_uploads, upload_chunks

if TYPE_CHECKING:
    from model.classifier import Classifier

THUMBNAIL_SIDE = 96
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class WorklistRow:
    """One line of the worklist; ``pacs_item`` stays on the server (it holds the UIDs)."""

    key: str  # the upload's name, or the PACS image key (the study key for a study's problem)
    prediction: Prediction  # the probabilities, or why this image or study has none
    image: DecodedImage | None = field(default=None, repr=False)
    thumbnail: str | None = None  # PNG data URI
    study_key: str | None = None
    study_date: str = ""
    study_description: str = ""
    seconds: float = 0.0  # the batch's mean time per image
    pacs_item: WorkItem | None = field(default=None, repr=False)
    audit_id: int | None = None  # the row's analysis or refusal in the audit trail
    heat_in_lungs: float | None = None  # the predicted class's heat share in the lungs


def thumbnail(image: DecodedImage, side: int = THUMBNAIL_SIDE) -> str:
    """A small PNG of the image as a data URI, for the table."""
    picture = Image.fromarray(image.gray)
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class PixelBudget:
    """Decoded pixels a worklist may still keep (rows keep their image for opening)."""

    left: float = float("inf")
    limit: float = float("inf")

    def admit(self, outcome: Classified) -> Classified:
        """The outcome, or a refusal once its image would pass the batch's pixel limit."""
        if outcome.image is None:
            return outcome
        pixels = outcome.image.gray.size
        if pixels > self.left:
            return Classified(outcome.item, None, Prediction.refused(
                f"Not analysed: this batch already holds its limit of "
                f"{self.limit / 1e6:g} megapixels of images; analyse the rest in another "
                "batch.", outcome.prediction.model_version))
        self.left -= pixels
        return outcome


def pixel_budget(settings: Settings) -> PixelBudget:
    """A fresh batch's budget of decoded pixels (``batch_max_megapixels``)."""
    pixels = settings.batch_max_megapixels * 1e6
    return PixelBudget(pixels, pixels)


def _collect(outcomes: Iterator[Classified], total: int, progress: Progress | None,
             budget: PixelBudget | None = None) -> tuple[list[Classified], float]:
    """Every outcome within the pixel budget, reporting progress as each arrives, and the
    mean seconds per item."""
    start = time.perf_counter()
    budget = budget or PixelBudget()
    collected: list[Classified] = []
    for outcome in outcomes:
        collected.append(budget.admit(outcome))
        if progress is not None:
            progress(len(collected), total)
    return collected, (time.perf_counter() - start) / max(1, len(collected))


def triage_uploads(uploads: list[Upload], predictor: Classifier, batch_size: int = 32,
                   progress: Progress | None = None, age_group: str | None = None,
                   budget: PixelBudget | None = None) -> list[WorklistRow]:
    """Decode, gate and classify every upload (no heatmaps: those come when a row is opened);
    ``age_group`` for all of them, None: each header's or the model's estimate."""
    outcomes, seconds = _collect(
        classify(uploads, lambda upload: decode_image(upload.data, upload.name), predictor,
                 batch_size, age_group=age_group), len(uploads), progress, budget)
    return [
        WorklistRow(key=outcome.item.name, prediction=outcome.prediction,
                    image=outcome.image, seconds=seconds,
                    thumbnail=None if outcome.image is None else thumbnail(outcome.image),
                    heat_in_lungs=heat_share(outcome, predictor))
        for outcome in outcomes
    ]


# Writes a chunk's audit rows and gives the rows back with their ids (audited_worklist).
ChunkRecorder = Callable[[list[Upload], list[WorklistRow]], list[WorklistRow]]


def triage_upload_files(files: list[tuple[str, bytes]], predictor: Classifier,
                        settings: Settings, record: ChunkRecorder,
                        progress: Progress | None = None, age_group: str | None = None,
                        resumed: Sequence[WorklistRow] = (),
                        ) -> tuple[list[WorklistRow], list[str]]:
    """The Worklist's upload batch, bounded: members are read, analysed and recorded
    (``record`` writes the audit rows) a chunk at a time, so at most one chunk's file bytes
    are held, and the rows keep at most ``batch_max_megapixels`` of decoded images.
    ``resumed``: the rows of the same files already analysed and recorded by a try that was cut
    short; their images are skipped (in the files' order) and counted against the budget.

    Returns (the rows analysed now, messages about what could not be read).
    """
    zip_limits = ZipLimits.from_settings(settings, DEFAULT_LIMITS.max_upload_bytes)
    budget = pixel_budget(settings)
    budget.left -= sum(row.image.gray.size for row in resumed if row.image is not None)
    total = expected_images(files)
    rows: list[WorklistRow] = []
    messages: list[str] = []
    skip = len(resumed)
    chunks = upload_chunks(iter_uploads(files, zip_limits), settings.batch_chunk_images,
                           settings.batch_chunk_bytes)
    for uploads, problems in chunks:
        messages += problems
        skipped = min(skip, len(uploads))
        skip, uploads = skip - skipped, uploads[skipped:]
        if not uploads:
            continue
        done = len(resumed) + len(rows)

        def chunk_progress(count: int, _total: int, done: int = done) -> None:
            if progress is not None:
                progress(done + count, max(total, done + count))

        chunk_rows = triage_uploads(uploads, predictor, settings.batch_chunk_images,
                                    chunk_progress, age_group, budget)
        rows += record(uploads, chunk_rows)
    return rows, messages


def triage_pacs(client: PacsClient, query: StudyQuery, predictor: Classifier,
                batch_size: int = 32, progress: Progress | None = None,
                age_group: str | None = None, budget: PixelBudget | None = None,
                ) -> list[WorklistRow]:
    """The query's chest studies through the model; PacsError if the archive cannot be searched."""
    items = work_items(client, query)
    outcomes, seconds = _collect(triage(client, items, predictor, batch_size, age_group),
                                 len(items), progress, budget)
    rows = []
    for outcome in outcomes:
        item = outcome.item
        study = item.study
        rows.append(WorklistRow(
            key=study.key if isinstance(item, StudyProblem) else item.key,
            prediction=outcome.prediction, image=outcome.image,
            thumbnail=None if outcome.image is None else thumbnail(outcome.image),
            study_key=study.key, study_date=study.date, study_description=study.description,
            seconds=seconds, pacs_item=item, heat_in_lungs=heat_share(outcome, predictor),
        ))
    return rows


def open_row(row: WorklistRow, predictor: Classifier | None) -> DiagnoseState:
    """The full Diagnose view of a row: its analysis with the predicted class's heatmap.

    The probabilities are the batch's; only the heatmap is computed now, by ``predictor``: the
    model that produced the row. None when that model is no longer loaded: Diagnose then
    analyses the film again and says so.
    """
    if row.image is None or row.prediction.refusal is not None:
        return DiagnoseState(row.key, error=row.prediction.refusal or "Not analysed.",
                             from_worklist=True)
    analysis = Analysis(
        file_name=row.key, image=row.image, prediction=row.prediction, heatmaps={},
        seconds=row.seconds, analysed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        lungs=lung_fields(row.image),
    )
    if predictor is not None:
        analysis = with_explanation(analysis, predictor, row.prediction.label)
    return DiagnoseState(row.key, analysis=analysis, from_worklist=True)
