"""Monitoring's weekly shift chart through app.py (AppTest): each week's analysed films, from
their stored features, against the served model's training films and its threshold; a week
with too few films marked as such, a model switch marked on the chart."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from model.run_dir import DEFAULT_RUN_DIR, FEATURE_BANK_FILE, METADATA_FILE, METRICS_FILE
from records import actions, audit
from records.accounts import CLI_ACTOR
from records.audit import now_utc
from records.db import open_database
from records.model_activations import activate
from records.settings import MODEL_DIR_ENV, SITES_DIR_ENV
from records.tables import AnalysisFeatures, AuditEvent
from testkit import stored_features
from testkit.apptest import open_page

pytestmark = pytest.mark.usefixtures("app_database_url")
PAGE = "views/monitoring.py"
ADAPTED = "shipped+site-St-Mary"


def adapted_run(sites: Path) -> Path:
    """An adapted run as training.adapt leaves one: the base's bank (same backbone), its own
    version; the reports Monitoring reads."""
    run = sites / "st-mary"
    run.mkdir(parents=True)
    for name in (FEATURE_BANK_FILE, METRICS_FILE):
        shutil.copy(DEFAULT_RUN_DIR / name, run)
    metadata = json.loads((DEFAULT_RUN_DIR / METADATA_FILE).read_text())
    (run / METADATA_FILE).write_text(json.dumps({**metadata, "version": ADAPTED}))
    return run


def values(array: dict | list) -> list[float]:
    """A trace's values as Plotly's JSON writes them: a list, or a typed array in base64."""
    if isinstance(array, list):
        return array
    return np.frombuffer(base64.b64decode(array["bdata"]), array["dtype"]).tolist()


def test_the_shift_score_by_week_against_the_threshold_with_switches(app_database_url,
                                                                     monkeypatch, tmp_path):
    monkeypatch.setenv(MODEL_DIR_ENV, str(DEFAULT_RUN_DIR))
    monkeypatch.setenv(SITES_DIR_ENV, str(tmp_path / "sites"))
    adapted = adapted_run(tmp_path / "sites")
    shipped = json.loads((DEFAULT_RUN_DIR / METADATA_FILE).read_text())["version"]
    films = stored_features.val_films()
    database = open_database(app_database_url)
    try:
        stored_features.store(database, shipped, stored_features.shifted(films[:70]))
        with database.session() as session, session.begin():  # as if analysed 2 weeks ago
            session.execute(update(AuditEvent).where(AuditEvent.id.in_(
                select(AnalysisFeatures.analysis_id))).values(at=now_utc() - timedelta(weeks=2)))
        activate(database, CLI_ACTOR, adapted, DEFAULT_RUN_DIR)
        stored_features.store(database, ADAPTED, films[70:80])
    finally:
        database.engine.dispose()
    at = open_page(PAGE)
    chart = json.loads(at.get_by_key("shift_by_week").proto.spec)
    traces = {trace["name"]: trace for trace in chart["data"]}
    [score], [threshold] = values(traces["shift score"]["y"]), values(traces["threshold"]["y"])
    assert score > threshold
    assert traces["too few films"]["text"] == ["too few films (10)"]
    notes = [note["text"] for note in chart["layout"].get("annotations", [])]
    assert notes == [f"model {ADAPTED}"]
    captions = " ".join(caption.value for caption in at.caption)
    assert "1 of the 2 shown" in captions and f"models {shipped}, {ADAPTED}" in captions


def test_analyses_without_stored_features_are_said_to_have_none(app_database_url,
                                                                 monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(DEFAULT_RUN_DIR))
    database = open_database(app_database_url)
    try:  # an analysis by a model server: no features come with it
        audit.record(database, audit.Event("rita", "radiologist", actions.ANALYSIS,
                                           label="NORMAL", latency_ms=1.0))
    finally:
        database.engine.dispose()
    at = open_page(PAGE)
    assert any("has its features kept" in item.value for item in at.info)
    with pytest.raises(KeyError):
        at.get_by_key("shift_by_week")
