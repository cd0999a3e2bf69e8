"""A one-page PDF of one analysis, for the record: the image and its heatmap, the probabilities,
the model version and time, and the decision-support notice. No patient identifier and no
file name (uploads are often named after the patient) appear in it."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from PIL import Image

from model.labels import display_name
from model.lung_fields import LOW_SHARE_WARNING, in_words
from model.run_dir import DEFAULT_RUN_DIR
from pacs.results import HEATMAP_NOTICE
from webapp.analysis import (
    NOTICE,
    Analysis,
    age_caption,
    age_warnings,
    display_image,
    overlay_image,
    site_notice,
    with_outline,
)

IMAGE_SIDE = 1024  # pixels embedded per image: sharp in print, small file
PAGE_WIDTH_MM, MARGIN_MM = 210, 15
MAX_IMAGE_HEIGHT_MM = 120


def _latin1(text: str) -> str:
    """The PDF core fonts speak Latin-1; anything else becomes '?' rather than failing."""
    return text.encode("latin-1", "replace").decode("latin-1")


def pdf_report(analysis: Analysis, class_name: str, opacity: float,
               run_dir: Path = DEFAULT_RUN_DIR) -> bytes:
    """The report as PDF bytes; ``class_name`` must be explained in ``analysis.heatmaps``;
    ``run_dir``: the served run, whose external checks the not-validated notice quotes."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(MARGIN_MM, MARGIN_MM)
    pdf.add_page()
    width = PAGE_WIDTH_MM - 2 * MARGIN_MM
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(width, 9, "Chest X-ray assistant: AI result", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 11)
    finding = display_name(analysis.predicted_class)
    pdf.cell(width, 7, _latin1(f"Most likely finding: {finding} ({analysis.probability:.1%})"),
             new_x="LMARGIN", new_y="NEXT")
    how_read = age_caption(analysis.prediction)
    if how_read:  # a model with age heads: which block it was read in, and what that means
        pdf.set_font("helvetica", "", 10)
        pdf.multi_cell(width, 5, _latin1(how_read), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", "B", 10)
        for warning in age_warnings(analysis.prediction):
            pdf.multi_cell(width, 5, _latin1(warning), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", "", 11)

    half = (width - 6) / 2
    top = pdf.get_y() + 3
    original = Image.fromarray(with_outline(display_image(analysis, IMAGE_SIDE), analysis.lungs))
    explained = Image.fromarray(overlay_image(analysis, class_name, opacity, IMAGE_SIDE,
                                              outline=True))
    aspect = original.height / original.width
    height = min(half * aspect, MAX_IMAGE_HEIGHT_MM)  # a tall image must leave room below
    pdf.image(original, x=MARGIN_MM, y=top, w=height / aspect, h=height)
    pdf.image(explained, x=MARGIN_MM + half + 6, y=top, w=height / aspect, h=height)
    pdf.set_y(top + height + 1)
    pdf.set_font("helvetica", "I", 9)
    outlined = " (lung outline)" if analysis.lungs is not None and analysis.lungs.found else ""
    pdf.cell(half + 6, 5, _latin1(f"Original{outlined}"))
    # Wrapped within the right-hand column: one line ran past the page's right edge.
    pdf.multi_cell(half, 5, _latin1(f"Grad-CAM for {display_name(class_name)}. "
                                    f"{HEATMAP_NOTICE}"), new_x="LMARGIN", new_y="NEXT")
    attention = analysis.attention(class_name)
    if attention is not None:
        pdf.ln(1)
        pdf.set_font("helvetica", "", 10)
        pdf.multi_cell(width, 5, _latin1(in_words(attention)), new_x="LMARGIN", new_y="NEXT")
        if attention.low:
            pdf.set_font("helvetica", "B", 10)
            pdf.multi_cell(width, 5, _latin1(LOW_SHARE_WARNING), new_x="LMARGIN", new_y="NEXT")

    pdf.ln(3)
    pdf.set_font("helvetica", "B", 11)
    pdf.cell(width, 7, "Calibrated probabilities", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 11)
    age = analysis.prediction.age
    for name, probability in analysis.probabilities.items():
        pdf.cell(70, 6, _latin1(display_name(name)))
        shown = "not assessed" if age is not None and name in age.not_assessed else (
            f"{probability:.1%}")
        pdf.cell(30, 6, shown, align="R", new_x="LMARGIN", new_y="NEXT")

    pdf.ln(3)
    facts = " | ".join(f"{key}: {value}" for key, value in analysis.image.facts.items())
    for line in (f"Model version: {analysis.prediction.model_version}",
                 f"Analysed at: {analysis.analysed_at} (UTC)", f"Image: {facts}"):
        pdf.multi_cell(width, 6, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("helvetica", "B", 10)
    for notice in (site_notice(analysis.prediction.validated_at_site, run_dir), NOTICE):
        pdf.multi_cell(width, 5, _latin1(notice), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
