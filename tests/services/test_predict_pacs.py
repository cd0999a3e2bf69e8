"""`python -m model.predict --pacs`: the same JSON-line contract as for files, read from a real
Orthanc; with --send-results the SR and heatmap capture are read back from it with pydicom."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from model.decode import decode_image
from model.labels import CLASS_NAMES
from model.predictor import Predictor
from pacs.keys import opaque_key
from pacs.results import HEATMAP_NOTICE, finding_code, probability_code
from testkit.pacs_studies import SECRET, identifiers, run_pacs_cli
from testkit.predict_cli import predict_cli
from testkit.servers import free_port

RESULT_KEYS = {"file", "study", "series", "label", "probabilities", "model",
               "validated_at_site"}
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture


def key(kind: str, uid: str) -> str:
    return opaque_key(kind, uid, SECRET.encode())


@pytest.fixture(scope="module")
def run_dir(factory_model_dir) -> Path:
    return factory_model_dir


def _source(study, sop_uid: str) -> bytes:
    return next(dicom for dicom in study.files if sop_uid.encode() in dicom)


def _no_identifiers(text: str, archive) -> None:
    for value in identifiers(archive.studies):
        assert value not in text
    for study in archive.studies:
        assert study.study_uid not in text
        assert all(uid not in text for uid in study.frontal_sop_uids)


def test_pacs_mode_prints_a_line_per_frontal_image_and_per_study_without_one(
        pacs_archive, run_dir):
    result = run_pacs_cli(pacs_archive, "--since", "20240101", "--until", "20240630",
                          "--model", run_dir)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    listed = [study for study in pacs_archive.studies if study.name != "not-a-radiograph"]
    expected_files = [key("image", uid) if uid else None
                      for study in listed for uid in (study.frontal_sop_uids or [None])]
    assert [record["file"] for record in records] == expected_files
    assert [record["study"] for record in records] == [
        key("study", study.study_uid) for study in listed
        for _ in (study.frontal_sop_uids or [None])]

    predictor = Predictor.load(run_dir)
    for study in listed:
        for sop_uid in study.frontal_sop_uids:
            record = next(r for r in records if r["file"] == key("image", sop_uid))
            assert set(record) == RESULT_KEYS
            assert record["series"].startswith("se-")
            assert list(record["probabilities"]) == list(CLASS_NAMES)
            assert record["label"] == max(record["probabilities"],
                                          key=record["probabilities"].get)
            expected = predictor.predict(decode_image(_source(study, sop_uid), "upload.dcm"))
            np.testing.assert_allclose(list(record["probabilities"].values()),
                                       list(expected.values()), atol=1e-5)
    lateral = next(r for r in records if r["study"] == key(
        "study", pacs_archive.study("lateral-only").study_uid))
    assert lateral["file"] is None and "lateral only" in lateral["error"]
    _no_identifiers(result.stdout + result.stderr, pacs_archive)


def test_since_limits_the_studies(pacs_archive, run_dir):
    result = run_pacs_cli(pacs_archive, "--since", "20240404", "--model", run_dir)
    assert result.returncode == 0, result.stderr
    studies = {json.loads(line)["study"] for line in result.stdout.splitlines()}
    assert studies == {key("study", pacs_archive.study(name).study_uid)
                       for name in ("lateral-only", "lateral-and-pa")}


def test_send_results_stores_an_sr_and_a_heatmap_in_the_study(pacs_archive, run_dir):
    study = pacs_archive.study("cr-monochrome1-ap")
    result = run_pacs_cli(pacs_archive, "--since", study.study_date, "--until",
                          study.study_date, "--send-results", "--model", run_dir)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["stored"] is True

    stored = [pydicom.dcmread(io.BytesIO(data))
              for data in pacs_archive.orthanc.instances_of_study(study.study_uid)]
    (sr,) = [ds for ds in stored if ds.SOPClassUID == SR_STORAGE]
    (sc,) = [ds for ds in stored if ds.SOPClassUID == SC_STORAGE]
    (source,) = [ds for ds in stored if ds.SOPInstanceUID == study.frontal_sop_uids[0]]
    for result_object in (sr, sc):
        assert result_object.StudyInstanceUID == study.study_uid
        assert result_object.SeriesInstanceUID != source.SeriesInstanceUID
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                        "StudyDescription"):
            assert str(result_object[keyword].value) == str(source[keyword].value)

    items = list(_content_items(sr))
    finding = next(item for item in items if item.ConceptNameCodeSequence[0].CodeValue
                   == "121071")
    assert finding.ConceptCodeSequence[0].CodeValue == finding_code(record["label"]).value
    for class_name, probability in record["probabilities"].items():
        (measured,) = [item for item in items if item.ValueType == "NUM"
                       and item.ConceptNameCodeSequence[0].CodeValue
                       == probability_code(class_name).value]
        assert float(measured.MeasuredValueSequence[0].NumericValue) == pytest.approx(
            probability, abs=1e-6)
    images = [item for item in items if item.ValueType == "IMAGE"]
    assert [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in images] == [
        source.SOPInstanceUID]
    texts = [str(item.get("TextValue", "")) for item in items]
    assert any(record["model"] in text for text in texts)  # algorithm version

    assert sc.Modality == "OT" and sc.BurnedInAnnotation == "YES"
    assert HEATMAP_NOTICE in sc.ImageComments
    pixels = sc.pixel_array
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    band = pixels[: pixels.shape[0] // 12]
    assert band.max() > 200 and band.std() > 10  # the burned-in notice on its black band


def _content_items(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _content_items(item)


@pytest.mark.parametrize(("environment", "message"), [
    ({"CXR_PACS_PASSWORD": "wrong"}, "refused the login"),
])
def test_a_refused_login_is_an_error_exit(pacs_archive, run_dir, environment, message):
    result = run_pacs_cli(pacs_archive, "--model", run_dir, **environment)
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr


def test_an_unreachable_pacs_is_an_error_exit(run_dir):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    result = predict_cli("--pacs", url, "--model", run_dir, CXR_PACS_BACKOFF_S="0.01",
                         CXR_PACS_RETRIES="1")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "could not be reached" in result.stderr and "Traceback" not in result.stderr


def test_an_address_that_is_not_a_url_is_an_error_exit(run_dir):
    result = predict_cli("--pacs", "orthanc:8042", "--model", run_dir)
    assert result.returncode == 1
    assert "not a DICOMweb URL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "20240101"], "only apply with --pacs"),
    (["--pacs", "http://x", "some.png"], "not both"),
    (["--pacs", "http://x", "--since", "2024-01-01"], "YYYYMMDD"),
    ([], "at least one image PATH"),
])
def test_pacs_usage_errors(args, message):
    result = predict_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
