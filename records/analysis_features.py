"""Each analysed film's pooled features, kept beside its audit row, and read back by model
version for the batch shift check (model.shift): the last N films, or the films since a time.

The vectors are written in the audit row's own transaction (no extra commit, so no extra
latency) and hold no identifier: docs/GOING_LIVE.md says why.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from records.db import Database
from records.tables import AnalysisFeatures, AuditEvent

DTYPE = np.float16


def keep(session: Session, analysis_id: int, features: np.ndarray | None) -> None:
    """Add one analysis's features inside the caller's (audited) transaction; None: nothing."""
    if features is not None:
        session.add(AnalysisFeatures(analysis_id=analysis_id,
                                     features=np.asarray(features, DTYPE).tobytes()))


def _matrix(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.frombuffer(blob, DTYPE) for blob in blobs]).astype(np.float32)


def latest(database: Database, versions: Collection[str], count: int) -> np.ndarray:
    """(n <= count, D) features of the last ``count`` films analysed by ``versions``."""
    query = (select(AnalysisFeatures.features)
             .join(AuditEvent, AnalysisFeatures.analysis_id == AuditEvent.id)
             .where(AuditEvent.model_version.in_(list(versions)))
             .order_by(AuditEvent.seq.desc()).limit(count))
    with database.session() as session:
        return _matrix(list(session.scalars(query)))


def since(database: Database, versions: Collection[str], start: datetime
          ) -> tuple[list[datetime], np.ndarray]:
    """When each film analysed by ``versions`` since ``start`` was analysed, and its features."""
    query = (select(AuditEvent.at, AnalysisFeatures.features)
             .join(AuditEvent, AnalysisFeatures.analysis_id == AuditEvent.id)
             .where(AuditEvent.model_version.in_(list(versions)), AuditEvent.at >= start)
             .order_by(AuditEvent.seq))
    with database.session() as session:
        rows = session.execute(query).all()
    return [row.at for row in rows], _matrix([row.features for row in rows])
