"""The Worklist page under Streamlit's AppTest: a batch of uploads, and a PACS query against the
real Orthanc with results sent back; every message readable, no identifier on the page."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from model.labels import display_name
from records.db import open_database
from records.settings import MODEL_DIR_ENV
from records.tables import AuditEvent
from testkit.apptest import RADIOLOGIST, open_page
from testkit.pacs_studies import identifiers
from testkit.synthetic_data import synthetic_xray


@pytest.fixture(autouse=True)
def accounts(app_database_url) -> str:
    """Every test signs in as a radiologist to a fresh database ($CXR_DATABASE_URL)."""
    return app_database_url


def png(label: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray(label, np.random.default_rng(seed), (150, 150))).save(
        buffer, format="PNG")
    return buffer.getvalue()


def worklist_page(monkeypatch, run_dir: Path, environment: dict[str, str]) -> AppTest:
    monkeypatch.setenv(MODEL_DIR_ENV, str(run_dir))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return open_page("views/worklist.py", RADIOLOGIST)


def press(at: AppTest, label: str) -> AppTest:
    next(button for button in at.button if button.label == label).click()
    at.run()
    assert not at.exception, [item.value for item in at.exception]
    return at


def query_pacs(at: AppTest) -> AppTest:
    at.segmented_control(key="worklist_source").set_value("PACS")
    at.run()
    return press(at, "Query the PACS")


def shown_text(at: AppTest) -> str:
    parts = [str(element.value) for kind in ("markdown", "caption", "info", "success",
                                             "warning", "error") for element in getattr(at, kind)]
    parts += [frame.value.to_csv() for frame in at.dataframe]
    return " ".join(parts)


def test_a_batch_of_uploads_is_sorted_and_a_bad_file_gets_its_reason(monkeypatch,
                                                                     factory_run_dir):
    at = worklist_page(monkeypatch, factory_run_dir, {})
    at.file_uploader(key="worklist_files").set_value([
        ("one.png", png(0, 1), "image/png"), ("two.png", png(3, 2), "image/png"),
        ("notes.png", b"just text", "image/png")])
    at.run()
    press(at, "Analyse the batch")
    (frame,) = at.dataframe
    table = frame.value
    assert list(table["image"])[-1] == "notes.png"
    assert "not an image" in table["refusal"].iloc[-1]
    scores = list(table["score"].dropna())
    assert scores == sorted(scores, reverse=True) and len(scores) == 2
    assert set(table["label"].dropna()) <= {display_name(name) for name in
                                            ("NORMAL", "BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA",
                                             "COVID19")}


def test_without_a_pacs_the_page_says_how_to_configure_one(monkeypatch, factory_run_dir):
    monkeypatch.delenv("CXR_PACS_URL", raising=False)
    at = worklist_page(monkeypatch, factory_run_dir, {})
    at.segmented_control(key="worklist_source").set_value("PACS")
    at.run()
    assert "CXR_PACS_URL" in at.info[0].value


def test_a_pacs_query_lists_studies_and_sends_results(monkeypatch, factory_run_dir,
                                                      pacs_archive):
    at = query_pacs(worklist_page(monkeypatch, factory_run_dir, pacs_archive.environment()))
    (frame,) = at.dataframe
    table = frame.value
    descriptions = set(table["study description"])
    assert {"CHEST PA", "CHEST LATERAL", "THORAX"} <= descriptions
    lateral = table[table["study description"] == "CHEST LATERAL"]
    assert "lateral only" in lateral["refusal"].iloc[0]

    at.selectbox(key="worklist_send_study").set_value(table["study"].dropna().iloc[0])
    at.button(key="worklist_send").click()
    at.run()
    assert at.success and "Stored the AI report" in at.success[0].value
    text = shown_text(at)
    assert not any(value in text for value in identifiers(pacs_archive.studies))
    assert not any(study.study_uid in text for study in pacs_archive.studies)


@pytest.mark.parametrize(("setting", "message"), [
    ({"CXR_PACS_PASSWORD": "wrong"}, "refused the login"),
    ({"CXR_PACS_URL": "orthanc:8042"}, "not a DICOMweb URL"),
])
def test_a_pacs_problem_is_a_message_and_the_page_keeps_working(
        monkeypatch, factory_run_dir, pacs_archive, setting, message):
    environment = pacs_archive.environment(**setting)
    at = query_pacs(worklist_page(monkeypatch, factory_run_dir, environment))
    assert message in at.error[0].value
    at.segmented_control(key="worklist_source").set_value("Upload")
    at.run()
    assert not at.exception


def test_every_image_of_a_batch_gets_its_audit_row_without_its_file_name(
        monkeypatch, factory_run_dir, app_database_url):
    at = worklist_page(monkeypatch, factory_run_dir, {})
    at.file_uploader(key="worklist_files").set_value([
        ("Doe_John_1234.png", png(0, 1), "image/png"),
        ("Roe_Jane_5678.png", b"just text", "image/png")])
    at.run()
    press(at, "Analyse the batch")
    database = open_database(app_database_url)
    with database.session() as session:
        rows = list(session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(["analysis", "refusal"])).order_by(AuditEvent.seq)))
    database.engine.dispose()
    assert [row.action for row in rows] == ["analysis", "refusal"]
    assert all(row.username == RADIOLOGIST[0] and '"worklist upload"' in row.detail
               for row in rows)
    assert rows[0].image_sha256 and rows[0].probabilities and rows[1].refusal_reason
    assert not any(name in str(vars(row)) for row in rows for name in ("Doe_John", "Roe_Jane"))
