"""Every CSV export keeps supplied text as text: no cell starts a spreadsheet formula."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from model.predictor import Predictor
from records import actions, audit
from records.audit import Event, export_csv, record
from records.safe_csv import FORMULA_STARTS, csv_text, neutralised
from testkit.model_factory import make_run_dir
from testkit.synthetic_data import synthetic_xray
from webapp.worklist import triage_uploads
from webapp.worklist_table import to_csv
from webapp.worklist_uploads import expand_uploads

HOSTILE = ['=HYPERLINK("http://127.0.0.1:9/x","open")', "+1+2", "-2+3", "@SUM(A1)",
           "\t=1", "\r=1"]


def formula_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row
            if cell.startswith(FORMULA_STARTS)]


def test_a_formula_cell_gets_an_apostrophe_and_numbers_stay_numbers():
    assert [neutralised(value) for value in HOSTILE] == ["'" + value for value in HOSTILE]
    assert neutralised(-0.5) == -0.5 and neutralised("plain") == "plain"
    text = csv_text(["a", "b"], [[HOSTILE[0], None], ["x,y", -3]])
    assert list(csv.reader(io.StringIO(text))) == [["a", "b"], ["'" + HOSTILE[0], ""],
                                                   ["x,y", "-3"]]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor.load(make_run_dir(tmp_path_factory.mktemp("run")))


def test_the_worklist_csv_neutralises_a_hostile_file_name(predictor):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray(0, np.random.default_rng(1), (160, 140))).save(buffer, "PNG")
    names = [f"{value}.png" for value in HOSTILE]
    uploads, _ = expand_uploads([(name, buffer.getvalue()) for name in names]
                                + [("=cmd|' /C calc'!A0.png", b"")])
    exported = to_csv(triage_uploads(uploads, predictor), predictor.classes).decode()
    assert formula_cells(exported) == []
    images = [line["image"] for line in csv.DictReader(io.StringIO(exported))]
    assert sorted(images) == sorted("'" + name for name in [*names, "=cmd|' /C calc'!A0.png"])


def test_the_audit_export_neutralises_supplied_text(database):
    for value in HOSTILE:
        record(database, Event(value, "radiologist", actions.REFUSAL, refusal_reason=value))
    today = audit.now_utc().date()
    exported = export_csv(database, today, today)
    assert formula_cells(exported) == []
    lines = list(csv.DictReader(io.StringIO(exported)))
    assert [line["username"] for line in lines] == ["'" + value for value in HOSTILE]
