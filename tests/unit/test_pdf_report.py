"""The PDF report laid out within its page, carrying the share of heat inside the lungs: checked
on the rendered page (Poppler's pdftoppm) and its text (pdftotext)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from model.age_groups import AgeReading
from model.decode import DecodedImage
from model.lung_fields import LungMask
from model.prediction import Prediction
from webapp.analysis import Analysis
from webapp.pdf_report import MARGIN_MM, PAGE_WIDTH_MM, pdf_report

CLASSES = ("NORMAL", "BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA", "COVID19")
DPI = 72


def synthetic_analysis(heat_inside: bool, age: AgeReading | None = None) -> Analysis:
    """A wide film explained for the class with the longest name, lungs in its middle."""
    height, width = 300, 400
    gray = np.tile(np.linspace(30, 220, width, dtype=np.uint8), (height, 1))
    lungs = np.zeros((64, 64), bool)
    lungs[12:52, 10:28] = lungs[12:52, 36:54] = True
    heatmap = np.zeros((height, width), np.float32)
    if heat_inside:
        heatmap[100:200, 100:150] = 1.0
    else:
        heatmap[:40, :] = 1.0  # along the top edge, where text and markers sit
    return Analysis(
        file_name="film.png", image=DecodedImage(gray=gray, source_format="PNG"),
        prediction=replace(Prediction.of(dict(zip(CLASSES, (0.1, 0.6, 0.2, 0.1), strict=True)),
                                         "test"), age=age),
        heatmaps={"BACTERIAL_PNEUMONIA": heatmap}, seconds=0.5,
        analysed_at="2026-12-02T12:00:00+00:00", lungs=LungMask(lungs))


@pytest.fixture(scope="module")
def poppler() -> None:
    if shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None:
        pytest.skip("Poppler's pdftoppm/pdftotext are not installed (apt-get install "
                    "poppler-utils; .ci/run installs them)")


def rendered(pdf: bytes, tmp_path) -> np.ndarray:
    (tmp_path / "report.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", "-singlefile",
                    str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True)
    return np.asarray(Image.open(tmp_path / "page.png").convert("L"))


def text_of(pdf: bytes, tmp_path) -> str:
    (tmp_path / "report.pdf").write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(tmp_path / "report.pdf"), "-"],
                          check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("heat_inside", [True, False])
def test_nothing_is_drawn_in_the_right_margin(poppler, tmp_path, heat_inside):
    page = rendered(pdf_report(synthetic_analysis(heat_inside), "BACTERIAL_PNEUMONIA", 0.4),
                    tmp_path)
    margin_start = round(page.shape[1] * (PAGE_WIDTH_MM - MARGIN_MM / 2) / PAGE_WIDTH_MM)
    assert page[:, margin_start:].min() > 200, "something runs into the page's right margin"


def test_the_report_says_how_much_of_the_attention_was_in_the_lungs(poppler, tmp_path):
    inside = " ".join(text_of(pdf_report(synthetic_analysis(True), "BACTERIAL_PNEUMONIA", 0.4),
                              tmp_path).split())
    assert "100% of the model's attention was inside the lungs." in inside
    assert "read it with extra care" not in inside
    assert "decision support, not for diagnosis" in inside  # the caption, wrapped, is all there
    outside = " ".join(text_of(pdf_report(synthetic_analysis(False), "BACTERIAL_PNEUMONIA", 0.4),
                               tmp_path).split())
    assert "0% of the model's attention was inside the lungs." in outside
    assert "The model looked mostly outside the lungs for this finding" in outside


def test_the_report_says_how_the_film_was_read_for_age(poppler, tmp_path):
    child = " ".join(text_of(pdf_report(synthetic_analysis(True, AgeReading(
        "child", "given", not_assessed=("COVID19",))), "BACTERIAL_PNEUMONIA", 0.4),
        tmp_path).split())
    assert "Read as the film of a child (as the reader chose)." in child
    assert "COVID-19 is not assessed for children" in child
    adult = " ".join(text_of(pdf_report(synthetic_analysis(
        True, AgeReading("adult", "estimated", 0.93)), "BACTERIAL_PNEUMONIA", 0.4),
        tmp_path).split())
    assert "Read as the film of an adult (estimated by the model, 93% sure)." in adult
    assert "Read as the film" not in " ".join(text_of(pdf_report(
        synthetic_analysis(True), "BACTERIAL_PNEUMONIA", 0.4), tmp_path).split()), \
        "a model without age heads says nothing of age"


def test_the_report_says_what_to_check_about_the_age_and_what_was_not_assessed(poppler,
                                                                                tmp_path):
    note = ("The model is 97% sure this is an adult's film, but it was read as a child's film "
            "(from the DICOM header): check the patient's age.")
    text = " ".join(text_of(pdf_report(synthetic_analysis(True, AgeReading(
        "child", "dicom", notes=(note,), not_assessed=("COVID19",))),
        "BACTERIAL_PNEUMONIA", 0.4), tmp_path).split())
    assert note in text
    assert "COVID-19 not assessed" in text
