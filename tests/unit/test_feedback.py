"""Radiologist feedback and the training export, on SQLite and a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from records import actions, audit
from records.accounts import Actor
from records.feedback import FeedbackError, reading_for, save_reading
from records.image_store import store_image
from records.settings import Settings
from records.tables import AuditEvent
from testkit import REPO_ROOT
from training.data import find_classes, scan_split
from training.export_feedback import export

SETTINGS = Settings(data_dir=REPO_ROOT / "unused", database_url="unused")
RITA = Actor("rita", "radiologist")
ROB = Actor("rob", "radiologist")


def analysis(database, label: str = "NORMAL", sha256: str = "ab" * 32) -> int:
    return audit.record(database, audit.Event(RITA.username, RITA.role, actions.ANALYSIS,
                                              image_sha256=sha256, label=label))


def test_agreeing_reads_the_models_class_and_is_audited(database):
    analysis_id = analysis(database, "COVID19")
    reading = save_reading(database, SETTINGS, RITA, analysis_id, True, None, "clear case")
    assert (reading.read_class, reading.agrees, reading.note) == ("COVID19", True, "clear case")
    assert reading_for(database, analysis_id, "rita") == reading
    assert reading_for(database, analysis_id, "rob") is None
    with database.session() as session:
        last = session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()))
    assert (last.action, last.label, last.username) == (actions.FEEDBACK, "COVID19", "rita")
    assert "clear case" not in (last.detail or "")


def test_disagreeing_needs_the_class_read(database):
    analysis_id = analysis(database)
    with pytest.raises(FeedbackError, match="Choose the class"):
        save_reading(database, SETTINGS, RITA, analysis_id, False, None)
    reading = save_reading(database, SETTINGS, RITA, analysis_id, False, "VIRAL_PNEUMONIA")
    assert (reading.read_class, reading.agrees) == ("VIRAL_PNEUMONIA", False)


def test_the_author_can_change_it_for_24_hours_and_not_after(database):
    analysis_id = analysis(database)
    start = audit.now_utc()
    save_reading(database, SETTINGS, RITA, analysis_id, True, None, now=start)
    changed = save_reading(database, SETTINGS, RITA, analysis_id, False, "COVID19", "second look",
                           now=start + timedelta(hours=23))
    assert (changed.read_class, changed.note, changed.created_at) == ("COVID19", "second look",
                                                                      start)
    with pytest.raises(FeedbackError, match="part of the record"):
        save_reading(database, SETTINGS, RITA, analysis_id, True, None,
                     now=start + timedelta(hours=24, seconds=1))
    assert reading_for(database, analysis_id, "rita").read_class == "COVID19"


def test_feedback_needs_an_analysis(database):
    refusal = audit.record(database, audit.Event("rita", "radiologist", actions.REFUSAL))
    with pytest.raises(FeedbackError, match="no analysis"):
        save_reading(database, SETTINGS, RITA, refusal, True, None)


def test_the_export_writes_a_class_folder_set_training_reads(database, tmp_path):
    images = tmp_path / "images"
    gray = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    kept = {"1" * 64: "NORMAL", "2" * 64: "COVID19", "3" * 64: "NORMAL"}
    for sha256, label in kept.items():
        store_image(images, sha256, gray)
        save_reading(database, SETTINGS, RITA, analysis(database, label, sha256), True, None)
    disputed = analysis(database, "NORMAL", "4" * 64)
    store_image(images, "4" * 64, gray)
    save_reading(database, SETTINGS, RITA, disputed, True, None)
    save_reading(database, SETTINGS, ROB, disputed, False, "COVID19")
    save_reading(database, SETTINGS, RITA, analysis(database, "NORMAL", "5" * 64), True, None)

    counts = export(database, images, tmp_path / "dataset")

    assert counts == {"NORMAL": 2, "COVID19": 1, "left out: readers disagree": 1,
                      "left out: image not kept": 1}
    assert find_classes(tmp_path / "dataset" / "train") == ["NORMAL", "COVID19"]
    samples = scan_split(tmp_path / "dataset", "train", ["NORMAL", "COVID19"])
    assert sorted(sample.path.stem for sample in samples) == sorted(kept)
