"""Validated at this site, or not (model.site_validation): every result of a model validated at
no site says so, with the figure from the run's own external checks, on the Diagnose page, the
Worklist rows, the PDF and the SR; a run adapted at a site names it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model.labels import COVID, NORMAL
from model.prediction import Prediction
from model.run_dir import read_metadata
from model.run_metrics import read_metrics
from model.site_validation import not_validated_notice, validated_at_site, worst_normal_figure
from pacs.results import structured_report, with_empty_type2
from testkit.dicom_factory import make_dataset
from testkit.model_factory import shipped_run_dir
from tests.unit.test_pdf_report import poppler, synthetic_analysis, text_of  # noqa: F401
from webapp.pdf_report import pdf_report
from webapp.worklist import WorklistRow
from webapp.worklist_table import table

PROBABILITIES = {"NORMAL": 0.7, "BACTERIAL_PNEUMONIA": 0.1, "VIRAL_PNEUMONIA": 0.1,
                 "COVID19": 0.1}


def shipped_figure() -> str:
    """The figure the notice must quote, computed here from the shipped metrics.json."""
    metrics = read_metrics(shipped_run_dir())
    shares = [scores.called[NORMAL].get(COVID, 0) / scores.labels[NORMAL]
              for scores in metrics.external.values() if scores.labels.get(NORMAL)]
    worst = max(shares)
    assert worst_normal_figure(metrics)[1] == pytest.approx(worst)
    return f"1 in {round(1 / worst)} normal films"


def test_the_shipped_model_is_validated_at_no_site_and_an_adapted_one_names_it():
    metadata = read_metadata(shipped_run_dir())
    assert validated_at_site(metadata) is None
    adapted = replace(metadata, adapted_from={"base_model": metadata.version, "site": "st-mary"})
    assert validated_at_site(adapted) == "st-mary"


def test_the_notice_quotes_the_runs_own_external_figure():
    notice = not_validated_notice(read_metrics(shipped_run_dir()))
    assert "not been validated at this site" in notice and shipped_figure() in notice
    assert "Sites page" in notice
    assert "No external check" in not_validated_notice(None)


def test_the_diagnose_page_of_a_fresh_install_shows_the_notice(app_database_url, monkeypatch):
    from records.settings import MODEL_DIR_ENV
    from testkit.apptest import open_page

    monkeypatch.setenv(MODEL_DIR_ENV, str(shipped_run_dir()))
    at = open_page()
    said = " ".join(str(warning.value) for warning in at.warning)
    assert "not been validated at this site" in said and shipped_figure() in said


def test_worklist_rows_say_where_the_model_was_validated():
    rows = [WorklistRow("a", Prediction.of(PROBABILITIES, "v")),
            WorklistRow("b", Prediction.of(PROBABILITIES, "v", validated_at_site="st-mary")),
            WorklistRow("c", Prediction.refused("not a chest X-ray", "v"))]
    cells = [record["validated at site"] for record in table(rows, list(PROBABILITIES))]
    assert cells == ["not validated", "st-mary", None]


def test_the_pdf_carries_the_notice_or_the_site(poppler, tmp_path):  # noqa: F811
    analysis = synthetic_analysis(True)
    text = " ".join(text_of(pdf_report(analysis, "BACTERIAL_PNEUMONIA", 0.4,
                                       shipped_run_dir()), tmp_path).split())
    assert "not been validated at this site" in text and shipped_figure() in text
    validated = replace(analysis, prediction=replace(analysis.prediction,
                                                     validated_at_site="st-mary"))
    text = " ".join(text_of(pdf_report(validated, "BACTERIAL_PNEUMONIA", 0.4,
                                       shipped_run_dir()), tmp_path).split())
    assert "Validated at this site (st-mary)" in text and "not been validated" not in text


@pytest.mark.parametrize("site", [None, "st-mary"])
def test_the_sr_carries_whether_the_model_was_validated_here(site):
    source = with_empty_type2(make_dataset(np.full((64, 64), 100, np.uint8)))
    report = structured_report(source, Prediction.of(PROBABILITIES, "v",
                                                     validated_at_site=site))
    meanings = [item.ConceptCodeSequence[0].CodeMeaning for item in _walk(report)
                if "ConceptCodeSequence" in item]
    expected = "Not validated at this site" if site is None else "Validated at st-mary"
    assert expected in meanings


def _walk(item):
    for child in getattr(item, "ContentSequence", []):
        yield child
        yield from _walk(child)


def test_the_diagnose_notice_goes_once_an_admin_accepts_the_served_model(app_database_url,
                                                                         monkeypatch):
    from records.accounts import Actor
    from records.db import open_database
    from records.settings import MODEL_DIR_ENV
    from records.site_acceptances import accept
    from testkit.apptest import open_page

    monkeypatch.setenv(MODEL_DIR_ENV, str(shipped_run_dir()))
    database = open_database(app_database_url)
    accept(database, Actor("ada", "admin"), "st-mary", read_metadata(shipped_run_dir()).version,
           shipped_run_dir(), {"NORMAL": 150}, {"recall": {"NORMAL": 0.95}}, "validate only")
    database.engine.dispose()
    at = open_page()
    assert not any("not been validated" in str(warning.value) for warning in at.warning)
    assert "Validated at this site (st-mary)." in [caption.value for caption in at.caption]
