"""The age group a film is read for, when the header, the reader and the film disagree: on the
shipped model with real X-rays, through the Diagnose page, its PDF and the audit trail.

A child's head was never trained on COVID-19, so a film read as a child's never has COVID-19
for its headline; a contradiction or an impossible header age is said, not silently taken.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from model.decode import decode_file, decode_image
from model.errors import ImageError
from model.predictor import Predictor
from records import actions
from records.db import open_database
from records.settings import MODEL_DIR_ENV
from records.tables import AuditEvent
from testkit.apptest import open_page, result_text, upload
from testkit.dicom_factory import make_dicom
from testkit.model_factory import shipped_run_dir

NOT_ASSESSED = "COVID-19 is not assessed for children"


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.load(shipped_run_dir())


def dicom_of(path: Path, age: str) -> bytes:
    """The real film as a DICOM whose header says ``age`` (PatientAge only: no birth date)."""
    return make_dicom(decode_file(path).gray, patient={"PatientAge": age})


def accepted(predictor: Predictor, folder: Path, count: int) -> list[Path]:
    """The first ``count`` films of a folder that the shipped model's gate accepts."""
    paths = []
    for path in sorted(folder.glob("*.jpg")):
        try:
            predictor.explain(decode_file(path))
        except ImageError:
            continue
        paths.append(path)
        if len(paths) == count:
            return paths
    raise AssertionError(f"fewer than {count} accepted films in {folder}")


def analyses(url: str) -> list[AuditEvent]:
    database = open_database(url)
    try:
        with database.session() as session:
            return list(session.scalars(select(AuditEvent).where(
                AuditEvent.action == actions.ANALYSIS).order_by(AuditEvent.seq)))
    finally:
        database.engine.dispose()


def test_an_adult_film_whose_header_says_child_never_headlines_covid(shipped, cxr4_dir):
    for path in accepted(shipped, cxr4_dir / "val" / "COVID19", 8):
        prediction = shipped.explain(decode_image(dicom_of(path, "005Y"), "film.dcm")).prediction
        assert (prediction.age.group, prediction.age.source) == ("child", "dicom")
        assert prediction.label != "COVID19", path.name
        assert prediction.probabilities["COVID19"] == 0.0
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
        assert prediction.age.not_assessed == ("COVID19",)


def test_the_model_says_so_when_it_is_sure_the_header_has_the_wrong_age(shipped, cxr4_dir):
    adult = accepted(shipped, cxr4_dir / "val" / "COVID19", 1)[0]
    as_child = shipped.explain(decode_image(dicom_of(adult, "005Y"), "f.dcm")).prediction
    assert any("sure this is an adult's film, but it was read as a child's film (from the "
               "DICOM header)" in note for note in as_child.age.notes)
    child = accepted(shipped, cxr4_dir / "val" / "NORMAL", 1)[0]  # Kermany: children
    as_adult = shipped.explain(decode_image(dicom_of(child, "045Y"), "f.dcm")).prediction
    assert any("sure this is a child's film, but it was read as an adult's film" in note
               for note in as_adult.age.notes)


@pytest.fixture
def shipped_app(monkeypatch) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(shipped_run_dir()))


@pytest.mark.usefixtures("shipped_app")
def test_diagnose_shows_and_audits_a_header_age_contradicted_by_the_film(app_database_url,
                                                                         shipped, cxr4_dir):
    adult = accepted(shipped, cxr4_dir / "val" / "COVID19", 1)[0]
    at = upload(open_page(), "film.dcm", dicom_of(adult, "005Y"), "application/dicom")

    headline = result_text(at)
    assert "COVID-19" not in at.get_by_key("result").metric[0].value
    assert NOT_ASSESSED in headline
    warnings = " ".join(warning.value for warning in at.get_by_key("result").warning)
    assert "sure this is an adult's film" in warnings
    (row,) = analyses(app_database_url)
    detail = json.loads(row.detail)
    assert (detail["age_group"], detail["age_group_source"]) == ("child", "dicom")
    assert detail["age_notes"] == [warnings]
    assert row.label != "COVID19"


@pytest.mark.usefixtures("shipped_app")
def test_a_readers_choice_against_the_header_and_an_impossible_age_are_said_and_audited(
        app_database_url, shipped, cxr4_dir):
    adult = accepted(shipped, cxr4_dir / "val" / "COVID19", 1)[0]
    at = open_page()
    at.radio(key="diagnose_age_group").set_value("Adult")
    upload(at, "film.dcm", dicom_of(adult, "005Y"), "application/dicom")
    said = " ".join(warning.value for warning in at.get_by_key("result").warning)
    assert "The reader chose an adult's film, but the DICOM header's age says a child's" in said

    at.radio(key="diagnose_age_group").set_value("Not known")
    upload(at, "other.dcm", dicom_of(adult, "999Y"), "application/dicom")
    said = " ".join(warning.value for warning in at.get_by_key("result").warning)
    assert "The DICOM header's age was not used (its patient age gives an age over 130 years)" \
        in said
    assert "999" not in said

    chosen, impossible = (json.loads(row.detail) for row in analyses(app_database_url))
    assert (chosen["age_group"], chosen["age_group_source"]) == ("adult", "given")
    assert "The reader chose an adult's film" in chosen["age_notes"][0]
    assert (impossible["age_group"], impossible["age_group_source"]) == ("adult", "estimated")
    assert "was not used" in impossible["age_notes"][0]
