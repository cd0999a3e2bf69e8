"""Worklist batches and their audit rows together: no table without one row per image.

Every image of a batch (an upload, a .zip member or a PACS image) gets an analysis or refusal
row, as one upload on the Diagnose page does; the rows of a batch commit in one transaction,
and if they cannot be written the page shows nothing (fail closed). Sending results to the
PACS and exporting the table are audited too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pacs.studies import ImageRef
from records import actions, audit
from records.accounts import Actor
from records.db import Database
from records.settings import Settings
from serving.client import ModelUnavailable
from webapp.audited_analysis import append_image, image_event
from webapp.worklist import Progress, WorklistRow, triage_upload_files
from webapp.worklist_uploads import Upload, expected_images

if TYPE_CHECKING:
    from model.predictor import Predictor

WORKLIST_UPLOAD = "worklist upload"
WORKLIST_PACS = "worklist PACS"
WORKLIST_BATCH = "worklist batch"  # one row per batch, after its images' rows, with counts


class TooManyBatches(RuntimeError):
    """The user started more batches in the last minute than the limit allows."""


@dataclass(frozen=True)
class CutShort:
    """A batch of uploads the model server stopped answering part-way through: its id, the
    files it was for (by fingerprint) and the rows analysed and recorded before it stopped."""

    batch: str
    files: str
    rows: tuple[WorklistRow, ...]


class BatchCutShort(RuntimeError):
    """The model server stopped part-way: the batch is closed in the trail as cut short, and
    ``resume`` lets the same files go on where it stopped, without recording an image twice."""

    def __init__(self, message: str, resume: CutShort) -> None:
        super().__init__(message)
        self.resume = resume


def new_batch() -> str:
    """An id that ties a batch's image rows together, so Monitoring counts a batch once."""
    return uuid.uuid4().hex


def row_event(actor: Actor, row: WorklistRow, source: str, name: str | None,
              image_sha256: str | None, image_bytes: int | None,
              sop_uid_hash: str | None, batch: str | None = None) -> audit.Event:
    """One worklist image as an audit row, as an upload's; a PACS study by its opaque key."""
    detail = {"source": source, **({"study": row.study_key} if row.study_key else {}),
              **({"batch": batch} if batch else {})}
    return image_event(actor, row.prediction, name, image_sha256, image_bytes, sop_uid_hash,
                       row.seconds * 1000, detail)


def _pixel_sha256(row: WorklistRow) -> str | None:
    """A PACS image's fingerprint: its decoded pixels (the archive may re-encode the file)."""
    return None if row.image is None else hashlib.sha256(row.image.gray.tobytes()).hexdigest()


def _with_ids(database: Database, rows: list[WorklistRow],
              events: list[audit.Event]) -> list[WorklistRow]:
    with audit.audited(database) as session:
        ids = [append_image(session, event, row.prediction)
               for event, row in zip(events, rows, strict=True)]
    return [dataclasses.replace(row, audit_id=row_id) for row, row_id in zip(rows, ids,
                                                                             strict=True)]


def record_upload_batch(database: Database, actor: Actor, uploads: list[Upload],
                        rows: list[WorklistRow], batch: str | None = None) -> list[WorklistRow]:
    """Audit rows for a batch (or a chunk of one) of uploads (``rows`` in the uploads' order);
    AuditUnavailable if they cannot be written."""
    events = [row_event(actor, row, WORKLIST_UPLOAD, upload.name,
                        audit.image_sha256(upload.data), len(upload.data),
                        audit.sop_uid_hash(database, upload.data, upload.name), batch)
              for upload, row in zip(uploads, rows, strict=True)]
    return _with_ids(database, rows, events)


def record_pacs_batch(database: Database, actor: Actor, rows: list[WorklistRow],
                      batch: str | None = None) -> list[WorklistRow]:
    """Audit rows for a PACS query's images; the archive's image is known by the salted hash
    of its SOP Instance UID, never the UID itself."""
    events = [row_event(actor, row, WORKLIST_PACS, None, _pixel_sha256(row),
                        None, audit.salted_uid_hash(database, row.pacs_item.sop_uid)
                        if isinstance(row.pacs_item, ImageRef) else None, batch)
              for row in rows]
    return _with_ids(database, rows, events)


def study_model_version(rows: list[WorklistRow], study_key: str) -> str | None:
    """The model version of a study's results (the SR names it too)."""
    return next((row.prediction.model_version for row in rows if row.study_key == study_key),
                None)


def record_sent(database: Database, actor: Actor, study_key: str, stored: bool,
                message: str, model_version: str | None = None) -> None:
    """Results sent to the PACS for one study (opaque key), and what the archive answered."""
    audit.record(database, audit.Event(actor.username, actor.role, actions.SENT_TO_PACS,
                                       model_version=model_version,
                                       detail={"study": study_key, "stored": stored,
                                               "message": message}))


def record_export(database: Database, actor: Actor, rows: list[WorklistRow]) -> None:
    """The worklist table downloaded as CSV, with the model version(s) that produced its rows
    (the row's version when they share one, as after a model switch they may not)."""
    versions = sorted({row.prediction.model_version for row in rows})
    audit.record(database, audit.Event(actor.username, actor.role, actions.DOWNLOAD,
                                       model_version=versions[0] if len(versions) == 1 else None,
                                       detail={"file": "worklist csv", "rows": len(rows),
                                               "model_versions": versions}))


def record_batch_done(database: Database, actor: Actor, batch: str, source: str,
                      rows: list[WorklistRow], unread: int, cut_short: str | None = None) -> None:
    """One row that closes a batch: its images, how many were refused, how many unread; for a
    batch the model server stopped part-way, why (``cut_short``) and ``unread`` the images it
    did not reach."""
    refused = sum(row.prediction.refusal is not None for row in rows)
    audit.record(database, audit.Event(actor.username, actor.role, WORKLIST_BATCH,
                                       model_version=rows[0].prediction.model_version
                                       if rows else None, detail={
        "batch": batch, "source": source, "images": len(rows), "refused": refused,
        "unread": unread, **({"cut_short": cut_short} if cut_short else {})}))


def files_fingerprint(files: list[tuple[str, bytes]], age_group: str | None) -> str:
    """The selected files, by name and content, and the age group chosen for them: a retry
    resumes only the very same batch."""
    digest = hashlib.sha256(str(age_group).encode())
    for name, data in files:
        digest.update(hashlib.sha256(name.encode("utf-8", "replace")).digest())
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def audited_upload_batch(database: Database, actor: Actor, files: list[tuple[str, bytes]],
                         predictor: Predictor, settings: Settings,
                         progress: Progress | None = None, age_group: str | None = None,
                         resume: CutShort | None = None) -> tuple[list[WorklistRow], list[str]]:
    """A Worklist batch of uploads, each chunk's audit rows written as it is analysed, then the
    row that closes the batch. ``resume``: the same files' batch that was cut short, gone on
    with under its id from the first image it did not reach. When the model server stops
    answering, the batch is closed as cut short and BatchCutShort carries what to resume."""
    fingerprint = files_fingerprint(files, age_group)
    if resume is None or resume.files != fingerprint:
        resume = CutShort(new_batch(), fingerprint, ())
    rows = list(resume.rows)

    def record(uploads: list[Upload], chunk: list[WorklistRow]) -> list[WorklistRow]:
        recorded = record_upload_batch(database, actor, uploads, chunk, resume.batch)
        rows.extend(recorded)
        return recorded

    try:
        _, messages = triage_upload_files(files, predictor, settings, record, progress,
                                          age_group, resume.rows)
    except ModelUnavailable as error:
        record_batch_done(database, actor, resume.batch, WORKLIST_UPLOAD, rows,
                          max(0, expected_images(files) - len(rows)), cut_short=str(error))
        raise BatchCutShort(str(error), dataclasses.replace(resume, rows=tuple(rows))) from error
    record_batch_done(database, actor, resume.batch, WORKLIST_UPLOAD, rows, len(messages))
    return rows, messages


def check_batch_rate(database: Database, actor: Actor, per_minute: int,
                     now: datetime | None = None) -> None:
    """TooManyBatches when the user closed ``per_minute`` batches in the last minute."""
    since = (now or audit.now_utc()) - timedelta(minutes=1)
    recent = audit.count_since(database, WORKLIST_BATCH, actor.username, since)
    if recent >= per_minute:
        raise TooManyBatches(f"You ran {recent} batches in the last minute; the limit is "
                             f"{per_minute} per minute. Try again in a moment.")
