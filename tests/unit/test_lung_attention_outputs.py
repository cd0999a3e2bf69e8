"""The share of heat inside the lungs where people meet it outside the Diagnose page: the
Worklist's sort and filter, and the DICOM SR's own measurement."""

from __future__ import annotations

import numpy as np
import pytest

from model.labels import CLASS_NAMES
from model.prediction import Prediction
from pacs.results import HEAT_IN_LUNGS_CODE, PRIVATE_SCHEME, structured_report, with_empty_type2
from testkit.dicom_factory import make_dataset
from webapp.worklist import WorklistRow
from webapp.worklist_table import HEAT_IN_LUNGS, looked_outside_lungs, sorted_rows, table

CLASSES = list(CLASS_NAMES)
PROBABILITIES = dict(zip(CLASSES, (0.1, 0.2, 0.3, 0.4), strict=True))


def row(key: str, heat: float | None, refused: bool = False) -> WorklistRow:
    prediction = (Prediction.refused("refused", "test-model") if refused
                  else Prediction.of(PROBABILITIES, "test-model"))
    return WorklistRow(key=key, prediction=prediction, heat_in_lungs=heat)


def test_the_worklist_sorts_the_least_heat_in_the_lungs_first():
    rows = [row("inside", 0.8), row("refused", None, refused=True), row("outside", 0.2),
            row("no lungs", None), row("half", 0.5)]
    assert [item.key for item in sorted_rows(rows, HEAT_IN_LUNGS)] == [
        "no lungs", "outside", "half", "inside", "refused"]
    assert [item.key for item in looked_outside_lungs(rows)] == ["outside", "no lungs"]
    assert [record["heat in lungs"] for record in table(rows, CLASSES)] == [
        0.8, None, 0.2, None, 0.5]


@pytest.mark.parametrize("heat", [0.37, None])
def test_the_sr_carries_the_share_as_its_own_measurement(heat):
    source = with_empty_type2(make_dataset(np.full((64, 64), 100, np.uint8)))
    report = structured_report(source, Prediction.of(PROBABILITIES, "test-model"), heat)
    found = [item for item in report.ContentSequence[-1].ContentSequence
             for item in _walk(item) if item.get("ValueType") == "NUM"
             and item.ConceptNameCodeSequence[0].CodeValue == HEAT_IN_LUNGS_CODE.value]
    if heat is None:
        assert found == []
        return
    (measurement,) = found
    assert measurement.ConceptNameCodeSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME
    assert float(measurement.MeasuredValueSequence[0].NumericValue) == pytest.approx(heat)


def _walk(item):
    yield item
    for child in item.get("ContentSequence", []):
        yield from _walk(child)


def test_the_model_card_says_where_the_model_looks():
    from model.predictor import DEFAULT_RUN_DIR
    from model.run_dir import EXPLANATIONS_FILE, read_json
    from training.model_card import HEATMAP_MEANING, explanation_lines

    report = read_json(DEFAULT_RUN_DIR / EXPLANATIONS_FILE)
    text = "\n".join(explanation_lines(report))
    assert "## Where the model looks" in text and HEATMAP_MEANING in text
    assert text.count("(shown)") == 1 and report["shown"] in text
    assert f"{report['films']} held-out adult films" in text
    assert explanation_lines(None) == []
