"""Monitoring figures from the audit trail, on SQLite and a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from records import actions, audit
from records.accounts import Actor
from records.feedback import save_reading
from records.monitoring import (
    agreement_matrix,
    agreement_rows,
    class_mix_drift,
    daily_summary,
    readings,
    refusal_rate,
    total_variation,
    uploads,
    validation_mix,
)
from records.settings import Settings
from testkit import REPO_ROOT
from webapp.audited_worklist import (
    WORKLIST_UPLOAD,
    TooManyBatches,
    check_batch_rate,
    new_batch,
    record_batch_done,
)

CLASSES = ["NORMAL", "BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA", "COVID19"]
SETTINGS = Settings(data_dir=REPO_ROOT / "unused", database_url="unused")
RITA = Actor("rita", "radiologist")
METRICS = {"classes": CLASSES,
           "confusion_matrix": [[40, 0, 0, 0], [0, 30, 0, 0], [0, 0, 20, 0], [0, 0, 0, 10]]}


def upload(database, label: str | None, latency_ms: float) -> int:
    action = actions.ANALYSIS if label else actions.REFUSAL
    return audit.record(database, audit.Event("rita", "radiologist", action, label=label,
                                              latency_ms=latency_ms))


def test_the_validation_mix_is_what_the_model_predicted_on_validation():
    assert validation_mix(METRICS["classes"], METRICS["confusion_matrix"]) == pytest.approx(
        {"NORMAL": 0.4, "BACTERIAL_PNEUMONIA": 0.3, "VIRAL_PNEUMONIA": 0.2, "COVID19": 0.1})


def test_daily_summary_counts_refusals_and_the_median_latency(database):
    for label, latency in [("NORMAL", 10.0), ("COVID19", 30.0), (None, 5.0), ("NORMAL", 20.0)]:
        upload(database, label, latency)
    summary = daily_summary(uploads(database))
    assert len(summary) == 1
    row = summary.iloc[0]
    assert (row["analyses"], row["refusals"]) == (3, 1)
    assert row["refusal_rate"] == pytest.approx(0.25)
    assert row["median_latency_ms"] == pytest.approx(15.0)


def test_drift_warns_only_past_the_threshold_with_enough_analyses(database):
    expected = validation_mix(METRICS["classes"], METRICS["confusion_matrix"])
    for _ in range(SETTINGS.drift_min_analyses):
        upload(database, "COVID19", 10.0)
    drifted = class_mix_drift(uploads(database), expected, audit.now_utc(), SETTINGS)
    assert drifted.distance == pytest.approx(0.9) and drifted.drifted
    assert drifted.analyses == SETTINGS.drift_min_analyses

    few = class_mix_drift(uploads(database).head(5), expected, audit.now_utc(), SETTINGS)
    assert not few.drifted


def test_a_mix_like_validation_does_not_drift():
    assert total_variation({"A": 0.5, "B": 0.5}, {"A": 0.45, "B": 0.55}) == pytest.approx(0.05)


def test_agreement_compares_the_model_with_radiologists(database):
    for label, agrees, read in [("NORMAL", True, None), ("NORMAL", False, "COVID19"),
                                ("COVID19", True, None)]:
        save_reading(database, SETTINGS, RITA, upload(database, label, 10.0), agrees, read)
    frame = readings(database)
    matrix = agreement_matrix(frame, CLASSES)
    assert matrix[0][0] == 1 and matrix[3][0] == 1 and matrix[3][3] == 1
    assert sum(map(sum, matrix)) == 3
    rows = {row["Model's class"]: row for row in agreement_rows(frame, CLASSES)}
    assert rows["Normal"]["Agreement"] == pytest.approx(0.5)
    assert rows["COVID-19"]["Agreement"] == pytest.approx(1.0)
    assert rows["Viral pneumonia"]["Readings"] == 0


def test_a_flood_of_batch_refusals_counts_as_one_upload_in_the_refusal_rate(database):
    for label in ("NORMAL", "COVID19", None):  # three uploads on Diagnose, one refused
        upload(database, label, 10.0)
    with audit.audited(database) as session:  # one worklist batch of 200 refused tiny files
        for _ in range(200):
            audit.append(session, audit.Event("mallory", "radiologist", actions.REFUSAL,
                                              detail={"source": WORKLIST_UPLOAD, "batch": "b1"}))
    frame = uploads(database)
    summary = daily_summary(frame)
    assert int(summary.iloc[0]["refusals"]) == 201  # every refused image is still recorded
    assert summary.iloc[0]["refusal_rate"] == pytest.approx(2 / 4)  # the batch counts once
    assert refusal_rate(frame) == pytest.approx(0.5)


def test_batches_per_user_per_minute_are_capped(database):
    mallory = Actor("mallory", "radiologist")
    for _ in range(SETTINGS.worklist_batches_per_minute):
        check_batch_rate(database, mallory, SETTINGS.worklist_batches_per_minute)
        record_batch_done(database, mallory, new_batch(), WORKLIST_UPLOAD, [], 0)
    with pytest.raises(TooManyBatches, match="the limit is 6 per minute"):
        check_batch_rate(database, mallory, SETTINGS.worklist_batches_per_minute)
    check_batch_rate(database, RITA, SETTINGS.worklist_batches_per_minute)  # others go on
    later = audit.now_utc() + timedelta(minutes=1, seconds=1)
    check_batch_rate(database, mallory, SETTINGS.worklist_batches_per_minute, now=later)
