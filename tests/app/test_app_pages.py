"""Every page of the app, run by Streamlit's AppTest against a real run directory.

Each test runs on a small factory-built model with synthetic X-rays, and on the shipped model
in model/artifacts with real val X-rays from ../shared (skipped when either is absent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from model.coverage import coverage
from model.decode import decode_file, decode_image
from model.errors import ImageError
from model.labels import CLASS_NAMES, display_name
from model.predictor import DEFAULT_RUN_DIR, Predictor
from model.run_dir import read_metadata, read_model_card
from model.run_metrics import read_metrics
from records.settings import MODEL_DIR_ENV
from testkit.apptest import open_page, png_bytes, result_text, synthetic_png, upload
from testkit.dicom_factory import FAKE_PATIENT, make_dicom
from testkit.model_factory import shipped_run_dir
from testkit.synthetic_data import synthetic_xray
from webapp.page_state import DIAGNOSE_RESULT

pytestmark = pytest.mark.usefixtures("app_database_url")


@pytest.fixture(params=["factory", "shipped"])
def run_dir(request, factory_run_dir, monkeypatch) -> Path:
    """The run directory the app serves in this test, handed over as $CXR_MODEL_DIR."""
    chosen = factory_run_dir if request.param == "factory" else shipped_run_dir()
    monkeypatch.setenv(MODEL_DIR_ENV, str(chosen))
    return chosen


@pytest.fixture
def predictor(run_dir) -> Predictor:
    return Predictor.load(run_dir)


@pytest.fixture
def xray_gray(request, run_dir) -> Callable[[int, int], np.ndarray]:
    """(label, seed) -> a chest X-ray the served model accepts, as a grayscale array.

    Synthetic for the factory model; for the shipped model a real val X-ray of that class,
    since its out-of-distribution gate rightly refuses synthetic blobs.
    """
    if run_dir != DEFAULT_RUN_DIR:
        return lambda label, seed=0: synthetic_xray(label, np.random.default_rng(seed),
                                                    (180, 150))
    val_dir = request.getfixturevalue("cxr4_dir") / "val"
    return lambda label, seed=0: decode_file(
        sorted((val_dir / CLASS_NAMES[label]).glob("*.jpg"))[seed]).gray


@pytest.fixture
def xray_png(xray_gray) -> Callable[[int, int], bytes]:
    return lambda label, seed=0: png_bytes(xray_gray(label, seed))


TEXT_ELEMENTS = ("title", "header", "subheader", "markdown", "caption", "text", "info",
                 "success", "warning", "error", "exception", "code")


def page_text(at: AppTest) -> str:
    """All the text a user can read on the page, through AppTest's public element lists."""
    parts = [str(element.value) for kind in TEXT_ELEMENTS for element in getattr(at, kind)]
    parts += [f"{metric.label} {metric.value}" for metric in at.metric]
    parts += [widget.label for kind in ("button", "selectbox", "slider", "radio", "file_uploader")
              for widget in getattr(at, kind)]
    return " ".join(parts)


def plotly_spec(at: AppTest, key: str) -> dict:
    return json.loads(at.get_by_key(key).proto.spec)


def stored_analysis(at: AppTest):
    return at.session_state[DIAGNOSE_RESULT].analysis


def test_diagnose_is_the_default_page_and_waits_for_an_upload(run_dir):
    at = open_page()
    assert at.title[0].value == "Diagnose"
    assert at.file_uploader(key="upload").value is None
    assert "not a diagnosis" in " ".join(info.value for info in at.info)
    with pytest.raises(KeyError):
        at.get_by_key("result")


def test_upload_shows_the_predicted_class_probability_chart_and_overlay(predictor, xray_png):
    data = xray_png(label=1)
    expected = predictor.explain(decode_image(data)).prediction.probabilities
    predicted = max(expected, key=expected.get)

    at = upload(open_page(), "chest.png", data)

    text = result_text(at)
    assert display_name(predicted) in text
    assert f"{expected[predicted]:.1%}" in text
    assert f"model version {predictor.version}" in text
    bars = plotly_spec(at, "probabilities")["data"][0]
    assert bars["x"] == pytest.approx([expected[name] for name in predictor.classes], abs=1e-6)
    assert bars["y"] == [display_name(name) for name in predictor.classes]
    overlay = at.get_by_key("overlay")
    assert "Grad-CAM" in " ".join(overlay.get("image")[0].captions)
    assert at.selectbox(key="explained_class").value == predicted
    assert [button.label for button in at.get("download_button")] == [
        "Overlay (PNG)", "Result (JSON)", "Report (PDF)"]


def test_opacity_changes_reuse_the_analysis(xray_png):
    at = upload(open_page(), "chest.png", xray_png(label=2))
    first = stored_analysis(at)

    at.slider(key="overlay_opacity").set_value(0.8)
    at.run()

    again = stored_analysis(at)
    assert (again.analysed_at, again.seconds) == (first.analysed_at, first.seconds)
    assert again.heatmaps.keys() == first.heatmaps.keys()


def test_explaining_another_class_adds_its_map_and_keeps_the_result(predictor, xray_png):
    at = upload(open_page(), "chest.png", xray_png(label=0))
    first = stored_analysis(at)
    headline = result_text(at)
    other = next(name for name in predictor.classes if name != first.predicted_class)

    at.selectbox(key="explained_class").set_value(other)
    at.run()

    again = stored_analysis(at)
    assert set(again.heatmaps) == {first.predicted_class, other}
    assert again.probabilities == first.probabilities
    assert (again.analysed_at, again.seconds) == (first.analysed_at, first.seconds)
    assert result_text(at) == headline
    caption = " ".join(at.get_by_key("overlay").get("image")[0].captions)
    assert display_name(other) in caption


def test_the_next_upload_replaces_the_result(xray_gray):
    first, second = xray_gray(0, 1), xray_gray(3, 2)
    if first.shape == second.shape:
        second = second[:, : second.shape[1] * 4 // 5]
    at = upload(open_page(), "first.png", png_bytes(first))
    upload(at, "second.png", png_bytes(second))

    analysis = stored_analysis(at)
    assert analysis.file_name == "second.png"
    assert analysis.image.gray.shape == second.shape
    assert len(at.get("image")) == 2


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.png", b"<html><body>not an image</body></html>"),
        ("empty.jpg", b""),
        ("truncated.png", synthetic_png(label=0)[:60]),
    ],
)
def test_a_bad_file_gets_a_readable_error_and_the_next_upload_works(name, data, xray_png):
    with pytest.raises(ImageError) as decoding:
        decode_image(data, name)

    at = upload(open_page(), name, data)

    assert [error.value for error in at.error] == [str(decoding.value)]
    with pytest.raises(KeyError):
        at.get_by_key("result")

    upload(at, "good.png", xray_png(label=1))
    assert not at.error
    assert "Most likely finding" in result_text(at)


def test_dicom_shows_acquisition_facts_and_no_patient_identifiers(xray_gray):
    data = make_dicom(xray_gray(2, 3), patient=FAKE_PATIENT)
    facts = decode_image(data, "scan.dcm").facts

    at = upload(open_page(), "scan.dcm", data, "application/dicom")

    text = page_text(at)
    assert facts and all(str(value) in text for value in facts.values())
    leaked = [value for value in FAKE_PATIENT.values() if value in text]
    assert not leaked


def test_performance_page_shows_the_run_files(run_dir):
    metrics = read_metrics(run_dir)
    at = open_page("views/performance.py")

    counts = plotly_spec(at, "confusion_matrix")["data"][0]["z"]
    assert np.array_equal(np.asarray(counts), np.asarray(metrics.confusion_matrix))
    for key in ("roc", "reliability", "training_curves"):
        assert plotly_spec(at, key)["data"]
    table = at.dataframe[0].value
    assert list(table["Support"]) == [metrics.per_class[name].support
                                      for name in metrics.classes]
    assert f"{metrics.macro_f1:.3f}" in [metric.value for metric in at.metric]
    subgroups = at.dataframe[1].value
    assert set(subgroups["Group"]) == set(metrics.subgroups["source"]) | set(
        metrics.subgroups["age_group"])
    table = at.dataframe[2].value
    assert list(table["Status"]) == [row.status for row in coverage(read_metadata(run_dir))]

    at.radio(key="confusion_scale").set_value("Row-normalised")
    at.run()
    shares = np.asarray(plotly_spec(at, "confusion_matrix")["data"][0]["z"])
    assert shares.sum(axis=1) == pytest.approx(np.ones(len(metrics.classes)))


def test_model_card_page_shows_version_backbone_date_and_card(run_dir):
    metadata, card = read_metadata(run_dir), read_model_card(run_dir)
    at = open_page("views/model_card.py")

    values = {metric.label: metric.value for metric in at.metric}
    assert values["Model version"] == metadata.version
    assert values["Backbone"] == metadata.backbone
    assert values["Trained"] == metadata.created_at[:10]
    assert "Intended use" in at.warning[0].value
    assert card.strip() in [markdown.value.strip() for markdown in at.markdown]


def test_admin_pages_explain_a_folder_without_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    for page in ("views/performance.py", "views/model_card.py"):
        at = open_page(page)
        assert str(tmp_path) in at.warning[0].value


@pytest.mark.parametrize("run_dir", ["shipped"], indirect=True)
@pytest.mark.parametrize("label", [1, 3])
def test_the_share_of_attention_in_the_lungs_is_said_in_words(xray_png, label):
    at = upload(open_page(), "chest.png", xray_png(label=label))
    analysis = stored_analysis(at)
    attention = analysis.attention(analysis.predicted_class)
    assert attention is not None and attention.lungs.found
    said = " ".join(str(element.value) for kind in ("markdown", "warning")
                    for element in at.get_by_key("attention").get(kind))
    assert f"{attention.heat_in_lungs:.0%} of the model's attention was inside the lungs" in said
    assert ("looked mostly outside the lungs" in said) == (attention.heat_in_lungs < 0.5)
    assert at.toggle(key="lung_outline").value is True
    at.toggle(key="lung_outline").set_value(False)
    at.run()
    assert not at.exception and stored_analysis(at).analysed_at == analysis.analysed_at
