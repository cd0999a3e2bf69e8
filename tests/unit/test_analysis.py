"""What the Diagnose page does with an upload, tested without Streamlit on a real (small) model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from model.decode import decode_image
from model.errors import ImageError
from model.labels import display_name
from model.predictor import Predictor
from testkit.dicom_factory import FAKE_PATIENT, make_dicom
from testkit.synthetic_data import synthetic_xray
from webapp.analysis import (
    NOTICE,
    DiagnoseState,
    analyse,
    display_image,
    overlay_image,
    overlay_png,
    result_json,
    state_for_upload,
    with_explanation,
    with_heatmap,
)

SIZE = (150, 210)  # (H, W): not square, to catch a swapped axis


@pytest.fixture(scope="module")
def predictor(factory_predictor) -> Predictor:
    return factory_predictor


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return synthetic_xray(1, np.random.default_rng(0), SIZE)


@pytest.fixture(scope="module")
def png(gray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def analysis(png, predictor):
    return analyse(png, "chest.png", predictor)


def test_analyse_gives_the_predictors_probabilities_and_a_map_of_the_predicted_class(
    analysis, gray, predictor
):
    expected = predictor.predict(gray)
    assert analysis.probabilities == pytest.approx(expected, abs=1e-5)
    assert analysis.predicted_class == max(expected, key=expected.get)
    assert analysis.probability == pytest.approx(max(expected.values()), abs=1e-5)
    assert list(analysis.heatmaps) == [analysis.predicted_class]
    assert analysis.heatmaps[analysis.predicted_class].shape == SIZE
    assert np.array_equal(analysis.image.gray, gray)
    assert analysis.prediction.model_version == predictor.version
    assert 0 < analysis.seconds < 60


def test_analyse_explains_the_class_asked_for(png, predictor, gray):
    analysis = analyse(png, "chest.png", predictor, class_name="COVID19")
    expected = predictor.explain(gray, "COVID19").heatmap
    assert np.allclose(analysis.heatmaps["COVID19"], expected, atol=1e-5)


def test_analyse_refuses_what_is_not_an_image(predictor):
    with pytest.raises(ImageError, match="notes.png"):
        analyse(b"%PDF-1.7 not an x-ray", "notes.png", predictor)


def test_analyse_refuses_a_dicom_that_is_not_a_radiograph(predictor):
    ct = Path(get_testdata_file("CT_small.dcm"))
    with pytest.raises(ImageError, match=r"CT \(computed tomography\) image, not a radiograph"):
        analyse(ct.read_bytes(), ct.name, predictor)


def test_another_class_adds_its_map_and_keeps_the_probabilities(analysis, predictor, gray):
    other = next(name for name in predictor.classes if name != analysis.predicted_class)
    explained = with_explanation(analysis, predictor, other)
    assert set(explained.heatmaps) == {analysis.predicted_class, other}
    assert np.allclose(explained.heatmaps[other], predictor.explain(gray, other).heatmap,
                       atol=1e-5)
    assert explained.probabilities == analysis.probabilities
    assert list(analysis.heatmaps) == [analysis.predicted_class]  # the original is unchanged


def test_a_class_already_explained_is_not_explained_again(analysis, predictor):
    assert with_explanation(analysis, predictor, analysis.predicted_class) is analysis


def test_an_upload_state_holds_its_analysis_or_the_reason_it_has_none(png, predictor):
    state = state_for_upload("upload-1", png, "chest.png", predictor)
    assert state.is_for("upload-1") and not state.is_for("upload-2")
    assert state.error is None
    assert state.analysis.file_name == "chest.png" and state.analysis.predicted_class
    refused = state_for_upload("upload-2", b"%PDF-1.7 not an x-ray", "notes.pdf", predictor)
    assert refused.analysis is None and "notes.pdf" in refused.error


def test_a_state_is_an_analysis_or_an_error_never_both_or_neither(analysis):
    for analysis_and_error in ((None, None), (analysis, "refused")):
        with pytest.raises(ValueError, match="an analysis or an error"):
            DiagnoseState("upload-1", *analysis_and_error)


def test_a_heatmap_for_another_class_joins_the_stored_analysis(analysis, predictor):
    state = DiagnoseState("upload-1", analysis)
    other = next(name for name in predictor.classes if name != analysis.predicted_class)
    explained = with_heatmap(state, predictor, other)
    assert explained.upload_id == "upload-1"
    assert set(explained.analysis.heatmaps) == {analysis.predicted_class, other}
    assert explained.analysis.probabilities == analysis.probabilities
    assert list(state.analysis.heatmaps) == [analysis.predicted_class]  # the original stays
    with pytest.raises(ValueError, match="no analysis"):
        with_heatmap(DiagnoseState("upload-2", error="refused"), predictor, other)


def test_overlay_png_is_full_size_and_follows_the_opacity(analysis, gray):
    name = analysis.predicted_class
    transparent = np.asarray(Image.open(io.BytesIO(overlay_png(analysis, name, 0.0))))
    assert transparent.shape == (*SIZE, 3)
    assert np.array_equal(transparent, np.repeat(gray[..., None], 3, axis=-1))
    blended = np.asarray(Image.open(io.BytesIO(overlay_png(analysis, name, 0.6))))
    assert np.abs(blended.astype(int) - transparent).mean() > 5


def test_display_images_shrink_to_the_longest_side_keeping_the_aspect(analysis):
    shrunk = overlay_image(analysis, analysis.predicted_class, 0.4, max_side=105)
    assert shrunk.shape == (75, 105, 3)
    assert display_image(analysis, max_side=105).shape == (75, 105)
    assert display_image(analysis, max_side=1000).shape == SIZE


def test_result_json_holds_the_answer_and_its_context(analysis):
    record = json.loads(result_json(analysis))
    assert record["predicted_class"] == analysis.predicted_class
    assert record["predicted_display_name"] == display_name(analysis.predicted_class)
    assert record["probabilities"] == pytest.approx(analysis.probabilities)
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert record["model_version"] == analysis.prediction.model_version
    assert record["analysed_at"] == analysis.analysed_at
    assert (record["image"]["height"], record["image"]["width"]) == SIZE
    assert record["notice"] == NOTICE


def test_dicom_results_keep_acquisition_facts_and_no_identifiers(predictor):
    data = make_dicom(synthetic_xray(0, np.random.default_rng(1), (128, 96)),
                      patient=FAKE_PATIENT)
    analysis = analyse(data, "scan.dcm", predictor)
    text = result_json(analysis).decode()
    assert json.loads(text)["image"]["acquisition"] == decode_image(data, "scan.dcm").facts
    assert not [value for value in FAKE_PATIENT.values() if value in text]
