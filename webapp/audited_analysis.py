"""An upload's analysis and its audit row, together: no result without its row (fail closed).

The Diagnose page calls these instead of the bare analysis functions; each raises
AuditUnavailable when the row cannot be written, and the page then shows nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from model.errors import ImageError
from model.prediction import Prediction
from records import actions, analysis_features, audit
from records.accounts import Actor
from records.db import Database
from records.image_store import keep_images, store_image
from records.settings import Settings
from records.tables import AuditEvent
from webapp.analysis import DiagnoseState, state_for_upload, with_heatmap

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from model.classifier import Classifier


@dataclass(frozen=True)
class AuditedState:
    """A DiagnoseState and the id of the audit row (analysis or refusal) that records it."""

    state: DiagnoseState
    audit_id: int


def image_event(actor: Actor, prediction: Prediction, name: str | None,
                image_sha256: str | None, image_bytes: int | None, sop_uid_hash: str | None,
                latency_ms: float, detail: dict | None = None) -> audit.Event:
    """The audit row of one analysed image (an upload, a worklist image): the image by hash and
    size, what the model said or why it refused, and the age group it was read for, how that
    was known and what was noted about it. The file name is left out, of the refusal reason
    too: hospitals name files after patients."""
    if prediction.age is not None:
        detail = {**(detail or {}), **prediction.age.audit_fields()}
    common = dict(username=actor.username, role=actor.role, image_sha256=image_sha256,
                  image_bytes=image_bytes, sop_uid_hash=sop_uid_hash,
                  model_version=prediction.model_version, latency_ms=round(latency_ms, 3),
                  detail=detail)
    refusal = prediction.refusal
    if refusal is not None:
        reason = refusal.replace(name, "the file") if name else refusal
        return audit.Event(action=actions.REFUSAL, refusal_reason=reason, **common)
    return audit.Event(action=actions.ANALYSIS, probabilities=prediction.probabilities,
                       label=prediction.label, **common)


def append_image(session: Session, event: audit.Event, prediction: Prediction | None) -> int:
    """Append one image's audit row, and the pooled features of its prediction beside it
    (records.analysis_features) in the same transaction; returns the row's id."""
    row = audit.append(session, event)
    analysis_features.keep(session, row.id, None if prediction is None else prediction.features)
    return row.id


def upload_event(actor: Actor, state: DiagnoseState, data: bytes, name: str, latency_ms: float,
                 sop_uid_hash: str | None, model_version: str) -> audit.Event:
    """The audit row of one Diagnose upload."""
    prediction = (state.analysis.prediction if state.analysis is not None
                  else Prediction.refused(state.error, model_version))
    return image_event(actor, prediction, name, audit.image_sha256(data), len(data),
                       sop_uid_hash, latency_ms)


def analyse_and_record(database: Database, settings: Settings, actor: Actor, upload_id: str,
                       data: bytes, name: str, predictor: Classifier,
                       age_group: str | None = None) -> AuditedState:
    """Analyse one upload and append its audit row; keep its pixels when an admin chose to."""
    start = time.perf_counter()
    state = state_for_upload(upload_id, data, name, predictor, age_group)
    latency_ms = (time.perf_counter() - start) * 1000
    event = upload_event(actor, state, data, name, latency_ms,
                         audit.sop_uid_hash(database, data, name), predictor.version)
    with audit.audited(database) as session:
        audit_id = append_image(session, event, state.analysis and state.analysis.prediction)
    if state.analysis is not None and keep_images(database):
        store_image(settings.images_dir, event.image_sha256, state.analysis.image.gray)
    return AuditedState(state, audit_id)


def explain_with_its_model(database: Database, actor: Actor, audited: AuditedState,
                           class_name: str, producing: Classifier | None, current: Classifier,
                           ) -> tuple[AuditedState, str | None]:
    """The open analysis with a Grad-CAM for ``class_name`` from the model that produced it
    (``producing``), so that its map, probabilities and model version stay one answer. When that
    model is no longer loaded (None), the film is analysed again by ``current``, with its own
    audit row, and the message says so."""
    if producing is not None:
        return replace(audited, state=with_heatmap(audited.state, producing, class_name)), None
    state, analysis = audited.state, audited.state.analysis
    age_group = analysis.prediction.chosen_age_group
    start, analysed_at = time.perf_counter(), datetime.now(UTC).isoformat(timespec="seconds")
    try:
        explanation = current.explain(analysis.image, class_name, age_group)
    except ImageError as refusal:
        prediction = Prediction.refused(str(refusal), current.version)
        again = replace(state, analysis=None, error=str(refusal))
    else:
        prediction = explanation.prediction
        again = replace(state, analysis=replace(
            analysis, prediction=prediction, heatmaps={class_name: explanation.heatmap},
            seconds=time.perf_counter() - start, analysed_at=analysed_at))
    with database.session() as session:
        first = session.get(AuditEvent, audited.audit_id)
        image = (first.image_sha256, first.image_bytes, first.sop_uid_hash)
    audit_id = audit.record(database, image_event(
        actor, prediction, analysis.file_name, *image, (time.perf_counter() - start) * 1000,
        {"analysed_again": audited.audit_id}))
    return AuditedState(again, audit_id), (
        f"Model {analysis.prediction.model_version}, which produced this result, is no longer "
        f"loaded, so the film was analysed again with model {current.version}: everything "
        "below is the new model's answer.")


def record_view(database: Database, actor: Actor, audit_id: int, action: str,
                **detail: str) -> None:
    """A heatmap class viewed or a download, tied to the analysis row it belongs to and naming
    the model version of that analysis (the served model may have been switched since)."""
    with audit.audited(database) as session:
        analysis = session.get(AuditEvent, audit_id)
        audit.append(session, audit.Event(
            actor.username, actor.role, action,
            model_version=None if analysis is None else analysis.model_version,
            detail={"analysis_id": audit_id, **detail}))
