"""Post-market monitoring from the audit trail: volume, class mix, refusals, latency, drift,
and how often radiologists agree with the model. Plain functions over the database.

Drift is the total-variation distance between the predicted-class mix of the last days and
the mix the model predicted on its validation split (the column sums of metrics.json's
confusion matrix): half the summed absolute differences of the shares, 0 (same) to 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select

from model.labels import display_name
from records.actions import ANALYSIS, REFUSAL
from records.db import Database
from records.settings import Settings
from records.tables import AuditEvent, Feedback

UPLOAD_COLUMNS = ["at", "action", "label", "latency_ms", "detail"]
READING_COLUMNS = ["model_class", "read_class", "agrees"]


def uploads(database: Database) -> pd.DataFrame:
    """Every analysis and refusal: time, action, predicted class, latency; plus its UTC day and
    its weight: 1 for an upload, 1/n for each of a worklist batch's n images, so a batch
    counts as one upload in the refusal rate (a flood of refusals cannot skew it)."""
    query = (select(AuditEvent.at, AuditEvent.action, AuditEvent.label, AuditEvent.latency_ms,
                    AuditEvent.detail)
             .where(AuditEvent.action.in_([ANALYSIS, REFUSAL])).order_by(AuditEvent.seq))
    with database.session() as session:
        frame = pd.DataFrame(session.execute(query).all(), columns=UPLOAD_COLUMNS)
    frame["day"] = pd.to_datetime(frame["at"]).dt.floor("D")
    batch = frame["detail"].map(lambda detail: json.loads(detail).get("batch")
                                if isinstance(detail, str) else None)
    sizes = batch.map(batch.value_counts())
    frame["weight"] = (1.0 / sizes).where(batch.notna(), 1.0).astype(float)
    return frame.drop(columns="detail")


def refusal_rate(frame: pd.DataFrame) -> float:
    """The weighted share of refusals: each upload counts once, and each batch once."""
    weights = frame["weight"]
    return float(weights[frame["action"] == REFUSAL].sum() / weights.sum())


def daily_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day: analyses, refusals, refusal rate (a batch counts once) and median latency
    (ms)."""
    grouped = frame.groupby("day")
    summary = pd.DataFrame({
        "analyses": grouped["action"].apply(lambda actions: int((actions == ANALYSIS).sum())),
        "refusals": grouped["action"].apply(lambda actions: int((actions == REFUSAL).sum())),
        "median_latency_ms": grouped["latency_ms"].median(),
        "refusal_rate": grouped[["action", "weight"]].apply(refusal_rate),
    })
    return summary.reset_index()


def class_mix(labels: pd.Series, classes: list[str]) -> dict[str, float]:
    """Share of each class among predicted labels (all zeros when there are none)."""
    counts = labels.value_counts().reindex(classes, fill_value=0).to_numpy(dtype=float)
    total = counts.sum()
    return dict(zip(classes, (counts / total if total else counts).tolist(), strict=True))


def class_mix_by_day(frame: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Per UTC day, each class's share of that day's analyses (rows: days, columns: classes)."""
    analysed = frame[frame["action"] == ANALYSIS]
    shares = pd.crosstab(analysed["day"], analysed["label"], normalize="index")
    return shares.reindex(columns=classes, fill_value=0.0)


def validation_mix(classes: Sequence[str], confusion_matrix: Sequence[Sequence[int]]
                   ) -> dict[str, float]:
    """What the model predicted on its validation split: its confusion matrix's column shares."""
    predicted = np.asarray(confusion_matrix, dtype=float).sum(axis=0)
    return dict(zip(classes, (predicted / predicted.sum()).tolist(), strict=True))


@dataclass(frozen=True)
class DriftCheck:
    """The recent class mix against the validation mix, and whether that calls for a warning."""

    analyses: int
    recent_mix: dict[str, float]
    distance: float
    threshold: float
    min_analyses: int

    @property
    def drifted(self) -> bool:
        return self.analyses >= self.min_analyses and self.distance > self.threshold


def total_variation(first: dict[str, float], second: dict[str, float]) -> float:
    return 0.5 * sum(abs(first[name] - second.get(name, 0.0)) for name in first)


def class_mix_drift(frame: pd.DataFrame, expected: dict[str, float], now: datetime,
                    settings: Settings) -> DriftCheck:
    """Total-variation distance between the last days' predicted mix and ``expected``."""
    since = now - timedelta(days=settings.drift_window_days)
    recent = frame[(frame["action"] == ANALYSIS) & (pd.to_datetime(frame["at"]) >= since)]
    mix = class_mix(recent["label"], list(expected))
    return DriftCheck(len(recent), mix, total_variation(mix, expected),
                      settings.drift_max_distance, settings.drift_min_analyses)


def readings(database: Database) -> pd.DataFrame:
    """Each radiologist reading beside what the model said of the same analysis."""
    query = (select(AuditEvent.label, Feedback.read_class, Feedback.agrees)
             .join(AuditEvent, Feedback.analysis_id == AuditEvent.id))
    with database.session() as session:
        return pd.DataFrame(session.execute(query).all(), columns=READING_COLUMNS)


def agreement_matrix(frame: pd.DataFrame, classes: list[str]) -> list[list[int]]:
    """Counts with rows the radiologist's class and columns the model's."""
    table = pd.crosstab(frame["read_class"], frame["model_class"])
    return table.reindex(index=classes, columns=classes, fill_value=0).astype(int).values.tolist()


def agreement_rows(frame: pd.DataFrame, classes: list[str]) -> list[dict]:
    """Per class the model gave: how many were read, and the share radiologists agreed with."""
    rows = []
    for name in classes:
        given = frame[frame["model_class"] == name]
        rows.append({"Model's class": display_name(name), "Readings": len(given),
                     "Agreement": float(given["agrees"].mean()) if len(given) else None})
    return rows
