"""Every result names the model version that produced it: the worklist's rows and CSV, the SR
(algorithm and device), the PDF. (Audit rows: analysis and refusal in tests/test_analysis.py
and tests/test_app_accounts.py; views and switches in tests/test_sites.py.)"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

import numpy as np
import pytest

from model.labels import CLASS_NAMES
from model.prediction import Prediction
from pacs.results import structured_report, with_empty_type2
from testkit.dicom_factory import make_dataset
from webapp.worklist import WorklistRow
from webapp.worklist_table import table, to_csv

VERSION = "base-v1+site-st-mary"
PROBABILITIES = dict(zip(CLASS_NAMES, (0.1, 0.2, 0.3, 0.4), strict=True))


def test_each_worklist_row_and_csv_line_names_its_model_version():
    rows = [WorklistRow("a.png", Prediction.of(PROBABILITIES, VERSION)),
            WorklistRow("b.png", Prediction.refused("Not a chest X-ray.", "base-v1"))]
    assert [record["model version"] for record in table(rows, list(CLASS_NAMES))] == [
        VERSION, "base-v1"]
    lines = list(csv.DictReader(io.StringIO(to_csv(rows, list(CLASS_NAMES)).decode())))
    assert [line["model version"] for line in lines] == [VERSION, "base-v1"]


def elements(dataset):
    """Every data element of a dataset, into its sequences."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from elements(item)
        else:
            yield element


def test_the_sr_names_the_version_as_its_algorithm_and_device_model():
    source = with_empty_type2(make_dataset(np.full((64, 64), 100, np.uint8)))
    report = structured_report(source, Prediction.of(PROBABILITIES, VERSION))
    texts = [element.value for element in elements(report) if element.keyword == "TextValue"]
    assert texts.count(VERSION) == 2  # the algorithm's version and the device's model name


def test_the_pdf_names_the_model_version(tmp_path):
    if shutil.which("pdftotext") is None:
        pytest.skip("Poppler's pdftotext is not installed (apt-get install poppler-utils)")
    from model.decode import DecodedImage
    from webapp.analysis import Analysis
    from webapp.pdf_report import pdf_report

    gray = np.tile(np.linspace(30, 220, 200, dtype=np.uint8), (150, 1))
    analysis = Analysis(file_name="film.png", image=DecodedImage(gray=gray, source_format="PNG"),
                        prediction=Prediction.of(PROBABILITIES, VERSION),
                        heatmaps={"COVID19": np.zeros((150, 200), np.float32)}, seconds=0.5,
                        analysed_at="2026-12-02T12:00:00+00:00")
    (tmp_path / "report.pdf").write_bytes(pdf_report(analysis, "COVID19", 0.4))
    text = subprocess.run(["pdftotext", str(tmp_path / "report.pdf"), "-"], check=True,
                          capture_output=True, text=True).stdout
    assert f"Model version: {VERSION}" in text


def test_a_closed_batch_and_results_sent_to_the_pacs_name_the_version(database):
    from sqlalchemy import select

    from records.accounts import Actor
    from records.tables import AuditEvent
    from webapp.audited_worklist import (
        WORKLIST_BATCH,
        WORKLIST_PACS,
        record_batch_done,
        record_sent,
        study_model_version,
    )

    rows = [WorklistRow("img-1", Prediction.of(PROBABILITIES, VERSION), study_key="study-a"),
            WorklistRow("img-2", Prediction.of(PROBABILITIES, "other"), study_key="study-b")]
    actor = Actor("rita", "radiologist")
    record_batch_done(database, actor, "batch-1", WORKLIST_PACS, rows, 0)
    record_sent(database, actor, "study-b", True, "stored",
                study_model_version(rows, "study-b"))
    with database.session() as session:
        found = dict(session.execute(select(AuditEvent.action, AuditEvent.model_version)).all())
    assert found[WORKLIST_BATCH] == VERSION and found["results sent to PACS"] == "other"


def test_a_worklist_csv_download_names_the_version_of_its_rows(database):
    import json

    from sqlalchemy import select

    from records.accounts import Actor
    from records.actions import DOWNLOAD
    from records.tables import AuditEvent
    from webapp.audited_worklist import record_export

    actor = Actor("rita", "radiologist")
    one = [WorklistRow("a.png", Prediction.of(PROBABILITIES, VERSION))] * 2
    mixed = [*one, WorklistRow("c.png", Prediction.of(PROBABILITIES, "base-v1"))]
    record_export(database, actor, one)
    record_export(database, actor, mixed)
    with database.session() as session:
        found = session.execute(select(AuditEvent.model_version, AuditEvent.detail).where(
            AuditEvent.action == DOWNLOAD).order_by(AuditEvent.id)).all()
    details = [json.loads(detail) if isinstance(detail, str) else detail for _, detail in found]
    assert [version for version, _ in found] == [VERSION, None]
    assert [detail["model_versions"] for detail in details] == [[VERSION], ["base-v1", VERSION]]
    assert [detail["rows"] for detail in details] == [2, 3]


def test_a_version_longer_than_a_dicom_long_string_is_bounded_in_the_sr_and_stays_distinct():
    """Algorithm Version and the device's model name mirror LO attributes (64 characters): a
    chained site version (up to 100) must fit, and two such versions must not read alike."""
    source = with_empty_type2(make_dataset(np.full((64, 64), 100, np.uint8)))
    base = "cxr4+adult-efficientnet_lite0-20261202-1219+site-"
    named = []
    for site in ("st-mary-north-campus-radiology", "st-mary-north-campus-radiology-2"):
        report = structured_report(source, Prediction.of(PROBABILITIES, base + site))
        texts = [element.value for element in elements(report)
                 if element.keyword == "TextValue" and element.value.startswith(base[:40])]
        assert len(texts) == 2 and all(len(text) <= 64 for text in texts), texts
        named.append(texts[0])
    assert named[0] != named[1]
