"""The app in a real browser: Debian's Chromium driven by Playwright against `streamlit run`.

Runs on the shipped model (the factory model's pages are covered in-process by
tests/test_app_pages.py, which takes both); the X-rays are real ones from ../shared/data/cxr4.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect
from pydicom.uid import RLELossless
from skimage import data

from model.decode import decode_image
from model.errors import ImageError
from model.labels import display_name
from model.run_dir import OOD_FILE
from testkit.browser_app import (
    BROWSER_ADMIN,
    OVERLAY_IMAGE,
    RESULT,
    cli_prediction,
    cli_record,
    first_xray,
    prepare_data_dir,
    running_app,
    sign_in,
    upload,
    wait_for_result,
)
from testkit.dicom_factory import FAKE_PATIENT, make_dicom
from testkit.model_factory import shipped_run_dir

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def run_dir() -> Path:
    return shipped_run_dir()


@pytest.fixture(scope="module")
def app_url(run_dir, tmp_path_factory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("data")
    prepare_data_dir(data_dir)
    with running_app(run_dir, data_dir, tmp_path_factory.mktemp("server") / "streamlit.log"
                     ) as url:
        yield url


@pytest.fixture
def diagnose(page, app_url):
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    sign_in(page, *BROWSER_ADMIN)
    page.get_by_test_id("stFileUploader").wait_for()
    return page


def test_an_xray_gets_the_clis_class_and_a_visible_overlay(diagnose, run_dir, cxr4_dir):
    xray = first_xray(cxr4_dir, "BACTERIAL_PNEUMONIA")
    expected = display_name(cli_prediction(run_dir, xray))

    upload(diagnose, xray)
    wait_for_result(diagnose, xray.name)

    result = diagnose.locator(RESULT)
    # Streamlit may still be redrawing the container's metrics when the caption shows: wait
    # for the finding itself (Playwright retries until the timeout), then read it.
    expect(result).to_contain_text(expected, timeout=TIMEOUT_MS)
    assert "%" in result.inner_text()
    overlay = diagnose.locator(OVERLAY_IMAGE)
    assert overlay.is_visible()
    assert overlay.evaluate("image => image.complete && image.naturalWidth > 0")
    assert "not a diagnosis" in diagnose.get_by_test_id("stAlertContentInfo").inner_text()


def test_the_performance_page_renders_the_confusion_matrix(diagnose):
    diagnose.get_by_role("link", name="Model performance").click()
    chart = diagnose.locator(".st-key-confusion_matrix")
    chart.locator(".js-plotly-plot").wait_for(state="visible")
    chart.get_by_text("predicted class").wait_for(state="visible")
    assert chart.locator("g.hm image, g.heatmaplayer image").count() >= 1


def test_a_non_image_gets_a_readable_error_then_an_xray_works(
    diagnose, cxr4_dir, tmp_path
):
    notes = tmp_path / "notes.txt"
    notes.write_text("Discharge summary: not an image.\n")
    with pytest.raises(ImageError) as decoding:
        decode_image(notes.read_bytes(), notes.name)

    upload(diagnose, notes)
    error = diagnose.get_by_test_id("stAlertContentError")
    error.filter(has_text=str(decoding.value)).wait_for(state="visible")
    assert diagnose.locator(RESULT).count() == 0

    xray = first_xray(cxr4_dir, "NORMAL")
    upload(diagnose, xray)
    wait_for_result(diagnose, xray.name)
    assert diagnose.get_by_test_id("stAlertContentError").count() == 0


def test_a_dicom_xray_shows_its_class_and_acquisition_but_no_identifiers(
    diagnose, run_dir, cxr4_dir, tmp_path
):
    jpeg = first_xray(cxr4_dir, "VIRAL_PNEUMONIA")
    gray = np.asarray(Image.open(jpeg).convert("L"))
    dicom = tmp_path / "chest.dcm"
    dicom.write_bytes(make_dicom(gray, bits=16, monochrome1=True,
                                 transfer_syntax=RLELossless))
    expected = display_name(cli_prediction(run_dir, dicom))

    upload(diagnose, dicom)
    wait_for_result(diagnose, dicom.name)

    expect(diagnose.locator(RESULT)).to_contain_text(expected, timeout=TIMEOUT_MS)
    for fact in ("Modality: DX", "View position: PA", "Body part examined: CHEST"):
        diagnose.get_by_text(fact).wait_for(state="visible")
    page_text = diagnose.content()
    for identifier in FAKE_PATIENT.values():
        assert identifier not in page_text


def test_a_photo_is_refused_with_the_gates_reason_then_an_xray_works(
    diagnose, run_dir, cxr4_dir, tmp_path
):
    assert (run_dir / OOD_FILE).is_file(), "the shipped model has a fitted gate"
    photo = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(photo, quality=90)
    refusal = cli_record(run_dir, photo)["error"]
    assert "not look like a frontal chest X-ray" in refusal

    upload(diagnose, photo)
    diagnose.get_by_test_id("stAlertContentError").filter(
        has_text="not look like a frontal chest X-ray").wait_for(state="visible")
    assert diagnose.locator(RESULT).count() == 0

    xray = first_xray(cxr4_dir, "COVID19")
    upload(diagnose, xray)
    wait_for_result(diagnose, xray.name)
    assert diagnose.get_by_test_id("stAlertContentError").count() == 0
