"""The worklist: many images at once (uploads, a .zip, or a PACS query), sorted so the most
suspicious film is read first. Plain functions, tested without Streamlit.

Each person's action is one function here (``triage_uploads``, ``triage_pacs``, ``open_row``,
``send_study_results``), so an audit record can be added at one place per action. Rows show
opaque keys and the study's date and description, never a patient identifier.
"""

from __future__ import annotations

import base64
import io
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from PIL import Image

from model.batch import Classified, classify
from model.decode import DecodedImage, decode_image
from model.labels import display_name
from model.limits import DEFAULT_LIMITS
from pacs.client import PacsClient
from pacs.errors import PacsError
from pacs.results import send_results
from pacs.settings import PacsSettings
from pacs.studies import ImageRef, StudyQuery
from pacs.triage import StudyProblem, WorkItem, triage, work_items
from webapp.analysis import Analysis, DiagnoseState, with_explanation
from webapp.bounded_zip import DEFAULT_ZIP_LIMITS, ZipLimits, image_members, iter_members
from webapp.safe_csv import csv_text
from webapp.settings import Settings

if TYPE_CHECKING:
    from model.predictor import Predictor

NOT_NORMAL = "not normal"  # the default sort: 1 - P(NORMAL)
NORMAL_CLASS = "NORMAL"
OPENED_FROM_WORKLIST = "worklist_opened"  # session key: the DiagnoseState a row opened
WORKLIST_ID_PREFIX = "worklist:"
THUMBNAIL_SIDE = 96
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Upload:
    """One image to analyse from the browser: its name (inside a .zip: archive/member) and bytes."""

    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class WorklistRow:
    """One line of the worklist; ``pacs_item`` stays on the server (it holds the UIDs)."""

    key: str  # the upload's name, or the PACS image key (the study key for a study's problem)
    probabilities: dict[str, float] | None
    error: str | None
    image: DecodedImage | None = field(default=None, repr=False)
    thumbnail: str | None = None  # PNG data URI
    study_key: str | None = None
    study_date: str = ""
    study_description: str = ""
    seconds: float = 0.0  # the batch's mean time per image
    pacs_item: WorkItem | None = field(default=None, repr=False)
    audit_id: int | None = None  # the row's analysis or refusal in the audit trail

    @property
    def label(self) -> str | None:
        if self.probabilities is None:
            return None
        return max(self.probabilities, key=self.probabilities.__getitem__)


def iter_uploads(files: Iterable[tuple[str, bytes]], limits: ZipLimits
                 ) -> Iterator[Upload | str]:
    """Browser files -> images to analyse, one at a time; a .zip gives its image and DICOM
    members as they are read. A str is a message about what could not be read."""
    for name, data in files:
        if not name.lower().endswith(".zip"):
            yield Upload(name, data)
            continue
        for found in iter_members(name, data, limits):
            yield found if isinstance(found, str) else Upload(*found)


def expand_uploads(files: Iterable[tuple[str, bytes]], limits: ZipLimits = DEFAULT_ZIP_LIMITS
                   ) -> tuple[list[Upload], list[str]]:
    """Every image of a few small files at once: (uploads, messages); nothing here raises."""
    uploads: list[Upload] = []
    messages: list[str] = []
    for item in iter_uploads(files, limits):
        (messages if isinstance(item, str) else uploads).append(item)
    return uploads, messages


def expected_images(files: Iterable[tuple[str, bytes]]) -> int:
    """How many images the files hold, from the zips' headers (for the progress bar)."""
    count = 0
    for name, data in files:
        if not name.lower().endswith(".zip"):
            count += 1
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                count += len(image_members(archive))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
            continue
    return count


def upload_chunks(items: Iterable[Upload | str], chunk_images: int, chunk_bytes: int
                  ) -> Iterator[tuple[list[Upload], list[str]]]:
    """(uploads, messages) in chunks of at most ``chunk_images`` images or about
    ``chunk_bytes`` bytes: the next member is not read until this chunk is done."""
    uploads: list[Upload] = []
    messages: list[str] = []
    size = 0
    for item in items:
        if isinstance(item, str):
            messages.append(item)
            continue
        uploads.append(item)
        size += len(item.data)
        if len(uploads) >= chunk_images or size >= chunk_bytes:
            yield uploads, messages
            uploads, messages, size = [], [], 0
    if uploads or messages:
        yield uploads, messages


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
            return Classified(outcome.item, None, error=(
                f"Not analysed: this batch already holds its limit of "
                f"{self.limit / 1e6:g} megapixels of images; analyse the rest in another "
                "batch."))
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


def triage_uploads(uploads: list[Upload], predictor: Predictor, batch_size: int = 32,
                   progress: Progress | None = None, budget: PixelBudget | None = None
                   ) -> list[WorklistRow]:
    """Decode, gate and classify every upload (no heatmaps: those come when a row is opened)."""
    outcomes, seconds = _collect(
        classify(uploads, lambda upload: decode_image(upload.data, upload.name), predictor,
                 batch_size), len(uploads), progress, budget)
    return [
        WorklistRow(key=outcome.item.name, probabilities=outcome.probabilities,
                    error=outcome.error, image=outcome.image, seconds=seconds,
                    thumbnail=None if outcome.image is None else thumbnail(outcome.image))
        for outcome in outcomes
    ]


# Writes a chunk's audit rows and gives the rows back with their ids (audited_worklist).
Recorder = Callable[[list[Upload], list[WorklistRow]], list[WorklistRow]]


def triage_upload_files(files: list[tuple[str, bytes]], predictor: Predictor,
                        settings: Settings, record: Recorder,
                        progress: Progress | None = None
                        ) -> tuple[list[WorklistRow], list[str]]:
    """The Worklist's upload batch, bounded: members are read, analysed and recorded
    (``record`` writes the audit rows) a chunk at a time, so at most one chunk's file bytes
    are held, and the rows keep at most ``batch_max_megapixels`` of decoded images.

    Returns (rows, messages about what could not be read).
    """
    zip_limits = ZipLimits.from_settings(settings, DEFAULT_LIMITS.max_upload_bytes)
    budget = pixel_budget(settings)
    total = expected_images(files)
    rows: list[WorklistRow] = []
    messages: list[str] = []
    chunks = upload_chunks(iter_uploads(files, zip_limits), settings.batch_chunk_images,
                           settings.batch_chunk_bytes)
    for uploads, problems in chunks:
        messages += problems
        if not uploads:
            continue
        done = len(rows)

        def chunk_progress(count: int, _total: int, done: int = done) -> None:
            if progress is not None:
                progress(done + count, max(total, done + count))

        chunk_rows = triage_uploads(uploads, predictor, settings.batch_chunk_images,
                                    chunk_progress, budget)
        rows += record(uploads, chunk_rows)
    return rows, messages


def triage_pacs(client: PacsClient, query: StudyQuery, predictor: Predictor,
                batch_size: int = 32, progress: Progress | None = None,
                budget: PixelBudget | None = None) -> list[WorklistRow]:
    """The query's chest studies through the model; PacsError if the archive cannot be searched."""
    items = work_items(client, query)
    outcomes, seconds = _collect(triage(client, items, predictor, batch_size), len(items),
                                 progress, budget)
    rows = []
    for outcome in outcomes:
        item = outcome.item
        study = item.study
        rows.append(WorklistRow(
            key=study.key if isinstance(item, StudyProblem) else item.key,
            probabilities=outcome.probabilities, error=outcome.error, image=outcome.image,
            thumbnail=None if outcome.image is None else thumbnail(outcome.image),
            study_key=study.key, study_date=study.date, study_description=study.description,
            seconds=seconds, pacs_item=item,
        ))
    return rows


def sort_score(row: WorklistRow, class_name: str = NOT_NORMAL) -> float:
    """How suspicious a row is: P(not normal), or P(class_name); refused rows score -1."""
    if row.probabilities is None:
        return -1.0
    if class_name == NOT_NORMAL:
        return 1.0 - row.probabilities.get(NORMAL_CLASS, 0.0)
    return row.probabilities[class_name]


def sorted_rows(rows: list[WorklistRow], class_name: str = NOT_NORMAL) -> list[WorklistRow]:
    """Most suspicious first; refused rows last, in their original order."""
    return sorted(rows, key=lambda row: -sort_score(row, class_name))


def viewer_link(row: WorklistRow, viewer_url: str | None) -> str | None:
    """The study in the PACS viewer (where identity lives), when a viewer URL is configured."""
    if not viewer_url or row.pacs_item is None:
        return None
    return viewer_url.replace("{study_uid}", quote(row.pacs_item.study.uid, safe=""))


def table(rows: list[WorklistRow], classes: list[str], class_name: str = NOT_NORMAL,
          viewer_url: str | None = None) -> list[dict[str, object]]:
    """The rows as the page shows them, in the given order: no identifiers, no UIDs in text."""
    records = []
    for row in rows:
        record: dict[str, object] = {
            "thumbnail": row.thumbnail,
            "image": row.key,
            "score": None if row.probabilities is None else round(sort_score(row, class_name), 4),
            "label": None if row.label is None else display_name(row.label),
        }
        for name in classes:
            record[display_name(name)] = None if row.probabilities is None else round(
                row.probabilities[name], 4)
        record.update({
            "refusal": row.error,
            "study date": _formatted_date(row.study_date),
            "study description": row.study_description or None,
            "study": row.study_key,
        })
        if viewer_url:
            record["viewer"] = viewer_link(row, viewer_url)
        records.append(record)
    return records


def _formatted_date(date: str) -> str | None:
    try:
        return datetime.strptime(date, "%Y%m%d").date().isoformat()
    except ValueError:
        return date or None


def to_csv(rows: list[WorklistRow], classes: list[str], class_name: str = NOT_NORMAL) -> bytes:
    """The table as CSV (without thumbnails or viewer links), for download."""
    records = table(rows, classes, class_name)
    columns = [column for column in records[0] if column != "thumbnail"] if records else []
    return csv_text(columns, ([record[column] for column in columns] for record in records)
                    ).encode("utf-8")


def open_row(row: WorklistRow, predictor: Predictor) -> DiagnoseState:
    """The full Diagnose view of a row: its analysis with the predicted class's heatmap.

    The probabilities are the batch's; only the heatmap is computed now.
    """
    if row.image is None or row.probabilities is None:
        return DiagnoseState(WORKLIST_ID_PREFIX + row.key, error=row.error or "Not analysed.")
    analysis = Analysis(
        file_name=row.key, image=row.image, probabilities=dict(row.probabilities), heatmaps={},
        seconds=row.seconds, model_version=predictor.version,
        analysed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    analysis = with_explanation(analysis, predictor, row.label)
    return DiagnoseState(WORKLIST_ID_PREFIX + row.key, analysis=analysis)


def is_from_worklist(state: DiagnoseState) -> bool:
    return state.upload_id.startswith(WORKLIST_ID_PREFIX)


def sendable_studies(rows: list[WorklistRow]) -> list[str]:
    """Study keys with at least one analysed PACS image, in worklist order."""
    keys = [row.study_key for row in rows
            if isinstance(row.pacs_item, ImageRef) and row.probabilities is not None]
    return list(dict.fromkeys(keys))


def send_study_results(settings: PacsSettings, rows: list[WorklistRow], study_key: str,
                       predictor: Predictor) -> tuple[bool, str]:
    """Store an SR and a heatmap capture for each analysed image of one study.

    Returns (success, a message for the page): the count stored, or the archive's error.
    """
    images = [row for row in rows if row.study_key == study_key
              and isinstance(row.pacs_item, ImageRef) and row.probabilities is not None]
    if not images:
        return False, f"Study {study_key} has no analysed image to report."
    try:
        client = PacsClient(settings)
        for row in images:
            send_results(client, row.pacs_item, row.image, row.probabilities, predictor)
    except PacsError as error:
        return False, str(error)
    count = "1 image" if len(images) == 1 else f"{len(images)} images"
    return True, (f"Stored the AI report (SR) and heatmap of {count} in study {study_key}; "
                  "they appear in the PACS viewer with the study.")
