"""The worklist's logic without Streamlit: batches from files and .zips, the sort, the table,
CSV, opening a row, and results sent to a real Orthanc."""

from __future__ import annotations

import csv
import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from model.bounded_zip import ZipLimits
from model.decode import decode_image
from model.errors import ImageError
from model.labels import CLASS_NAMES, display_name
from model.predictor import Predictor
from pacs.client import PacsClient
from pacs.settings import settings_for
from pacs.studies import StudyQuery
from testkit.dicom_factory import FAKE_PATIENT, make_dicom
from testkit.pacs_studies import identifiers
from testkit.site_factory import zip_of
from testkit.synthetic_data import synthetic_xray
from webapp.pdf_report import pdf_report
from webapp.worklist import open_row, triage_pacs, triage_uploads
from webapp.worklist_results import send_study_results, sendable_studies
from webapp.worklist_table import (
    NOT_NORMAL,
    sort_score,
    sorted_rows,
    table,
    to_csv,
    viewer_link,
)
from webapp.worklist_uploads import Upload, expand_uploads

SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(scope="module")
def predictor(factory_predictor) -> Predictor:
    return factory_predictor


def png(label: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray(label, np.random.default_rng(seed), (160, 140))).save(
        buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def uploads() -> list[Upload]:
    dicom = make_dicom(synthetic_xray(1, np.random.default_rng(9), (200, 180)), monochrome1=True)
    found, messages = expand_uploads([
        ("a.png", png(0, 1)),
        ("batch.zip", zip_of({"x/b.png": png(2, 2), "x/c.dcm": dicom, "__MACOSX/._b.png": b"",
                              "notes.txt": b"not an image", "scan": dicom})),
        ("empty.png", b""),
        ("d.png", png(3, 4)),
    ])
    assert messages == []
    return found


def test_a_zip_gives_its_image_and_dicom_members(uploads):
    assert [upload.name for upload in uploads] == [
        "a.png", "batch.zip/x/b.png", "batch.zip/x/c.dcm", "batch.zip/scan", "empty.png",
        "d.png"]


def test_a_bad_zip_gets_a_message_and_the_rest_goes_on():
    found, messages = expand_uploads([("broken.zip", b"PK\x03\x04 not really"),
                                      ("empty.zip", zip_of({"readme.txt": b"hi"})),
                                      ("ok.png", png(0, 0))])
    assert [upload.name for upload in found] == ["ok.png"]
    assert messages == ["broken.zip is not a readable .zip archive.",
                        "empty.zip holds no PNG, JPEG, TIFF or DICOM files."]


def test_a_zip_over_the_limits_is_refused_before_it_is_read():
    limits = ZipLimits(max_member_bytes=1000)
    found, messages = expand_uploads([("big.zip", zip_of({"a.png": bytes(5000),
                                                          "b.png": png(0, 0)[:900]}))], limits)
    assert [upload.name for upload in found] == ["big.zip/b.png"]
    assert messages == ["big.zip/a.png is 0 MB, over the 0 MB limit; it was not read."]
    found, messages = expand_uploads([("many.zip", zip_of({"a.png": b"1", "b.png": b"2"}))],
                                     ZipLimits(max_members=1))
    assert found == [] and messages == ["many.zip holds 2 images; at most 1 per batch."]


def test_triage_gives_each_upload_the_predictors_answer(uploads, predictor):
    steps = []
    rows = triage_uploads(uploads, predictor, batch_size=2,
                          progress=lambda done, total: steps.append((done, total)))
    assert steps == [(done, len(uploads)) for done in range(1, len(uploads) + 1)]
    assert [row.key for row in rows] == [upload.name for upload in uploads]
    for row, upload in zip(rows, uploads, strict=True):
        try:
            expected = predictor.predict(decode_image(upload.data, upload.name))
        except ImageError as refusal:
            assert row.prediction.refusal == str(refusal) and row.prediction.probabilities is None
            continue
        np.testing.assert_allclose(list(row.prediction.probabilities.values()),
                                   list(expected.values()), atol=1e-5)
        assert row.thumbnail.startswith("data:image/png;base64,")
    assert rows[4].prediction.refusal is not None and "empty" in rows[4].prediction.refusal


@pytest.mark.parametrize("class_name", [NOT_NORMAL, *CLASS_NAMES])
def test_rows_are_sorted_most_suspicious_first_refusals_last(uploads, predictor, class_name):
    ordered = sorted_rows(triage_uploads(uploads, predictor), class_name)
    scores = [sort_score(row, class_name) for row in ordered]
    assert scores == sorted(scores, reverse=True)
    assert ordered[-1].prediction.probabilities is None
    if class_name == NOT_NORMAL:
        assert scores[0] == pytest.approx(1 - ordered[0].prediction.probabilities["NORMAL"])


def test_the_table_and_csv_hold_the_labels_and_no_identifiers(uploads, predictor):
    rows = sorted_rows(triage_uploads(uploads, predictor))
    records = table(rows, predictor.classes)
    assert [record["image"] for record in records] == [row.key for row in rows]
    for record, row in zip(records, rows, strict=True):
        assert record["label"] == (row.prediction.label and display_name(row.prediction.label))
        assert record["refusal"] == row.prediction.refusal
    exported = list(csv.DictReader(io.StringIO(to_csv(rows, predictor.classes).decode())))
    assert [line["image"] for line in exported] == [row.key for row in rows]
    assert "thumbnail" not in exported[0]
    assert float(exported[0][display_name("NORMAL")]) == pytest.approx(
        rows[0].prediction.probabilities["NORMAL"], abs=1e-4)
    text = repr(records) + to_csv(rows, predictor.classes).decode()
    assert not any(value in text for value in identifiers_of_factory())


def identifiers_of_factory() -> list[str]:
    return [FAKE_PATIENT[key] for key in ("PatientName", "PatientID", "AccessionNumber",
                                          "PatientBirthDate")]


def test_opening_a_row_gives_the_diagnose_view_with_a_heatmap(uploads, predictor):
    row = next(row for row in triage_uploads(uploads, predictor) if row.prediction.probabilities)
    state = open_row(row, predictor)
    assert state.error is None
    analysis = state.analysis
    assert analysis.probabilities == row.prediction.probabilities
    assert analysis.heatmaps[row.prediction.label].shape == row.image.gray.shape
    pdf = pdf_report(analysis, row.prediction.label, 0.4)
    assert pdf.startswith(b"%PDF") and b"/Count 1" in pdf  # one page


def test_opening_a_refused_row_gives_its_message(uploads, predictor):
    row = next(row for row in triage_uploads(uploads, predictor) if row.prediction.refusal)
    assert open_row(row, predictor).error == row.prediction.refusal


def test_a_pacs_worklist_sends_results_back_to_the_study(pacs_archive, predictor):
    settings = settings_for(pacs_archive.orthanc.dicomweb_url, pacs_archive.environment())
    client = PacsClient(settings)
    study = pacs_archive.study("dx-jpeg-no-view")
    rows = triage_pacs(client, StudyQuery(since=study.study_date, until=study.study_date),
                       predictor)
    (row,) = rows
    assert row.study_description == study.description and row.study_key.startswith("st-")
    assert sendable_studies(rows) == [row.study_key]
    assert viewer_link(row, None) is None
    assert viewer_link(row, "http://viewer/ohif?StudyInstanceUIDs={study_uid}").endswith(
        study.study_uid)
    text = repr(rows) + repr(table(rows, predictor.classes))
    assert not any(value in text for value in identifiers(pacs_archive.studies))
    assert study.study_uid not in text

    stored, message = send_study_results(settings, rows, row.study_key, predictor)
    assert stored, message
    assert row.study_key in message
    classes = {pydicom_class(data) for data in pacs_archive.orthanc.instances_of_study(
        study.study_uid)}
    assert SR_STORAGE in classes

    refused = settings_for(pacs_archive.orthanc.dicomweb_url,
                           pacs_archive.environment(CXR_PACS_PASSWORD="wrong"))
    stored, message = send_study_results(refused, rows, row.study_key, predictor)
    assert not stored and "refused the login" in message


def test_a_lateral_only_study_is_a_row_saying_so(pacs_archive, predictor):
    client = PacsClient(settings_for(pacs_archive.orthanc.dicomweb_url,
                                     pacs_archive.environment()))
    study = pacs_archive.study("lateral-only")
    (row,) = triage_pacs(client, StudyQuery(since=study.study_date, until=study.study_date),
                         predictor)
    assert row.prediction.probabilities is None and "lateral only" in row.prediction.refusal
    assert sendable_studies([row]) == []
    assert open_row(row, predictor).error == row.prediction.refusal


def pydicom_class(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPClassUID)
