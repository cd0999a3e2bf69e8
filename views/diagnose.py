"""Diagnose: upload one chest X-ray; see what the model thinks, how sure it is, where it looked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from model.coverage import not_validated, validation_warning
from model.errors import ModelLoadError
from model.labels import display_name
from model.lung_fields import LOW_SHARE_WARNING, in_words
from model.run_dir import Metadata
from records.accounts import Actor
from records.actions import DOWNLOAD, HEATMAP_VIEWED
from records.audit import AuditUnavailable, now_utc
from records.feedback import FeedbackError, editable, reading_for, save_reading
from records.settings import load_settings
from serving.client import ModelUnavailable
from webapp.analysis import (
    AGE_CHOICE_HELP,
    AGE_CHOICES,
    NOTICE,
    Analysis,
    DiagnoseState,
    age_caption,
    age_warnings,
    display_image,
    overlay_image,
    overlay_png,
    result_json,
    site_notice,
    with_outline,
)
from webapp.audited_analysis import (
    AuditedState,
    analyse_and_record,
    explain_with_its_model,
    record_view,
)
from webapp.charts import probability_chart
from webapp.page_state import (
    DIAGNOSE_AGE_GROUP,
    DIAGNOSE_AUDIT_ID,
    DIAGNOSE_RESULT,
    EXPLAINED_CLASS,
    HEATMAP_CHOSEN,
    WORKLIST_OPENED,
    OpenedRow,
)
from webapp.pdf_report import pdf_report
from webapp.plain_text import plain
from webapp.resources import (
    app_database,
    load_predictor,
    model_unavailable,
    run_dir,
    served_model,
)
from webapp.session import PAUSED, require_signed_in

if TYPE_CHECKING:
    from model.classifier import Classifier

DISPLAY_SIDE = 768  # pixels sent to the browser; downloads keep the full resolution


def try_again_later(message: str) -> None:
    """No result now (the model server or the audit trail cannot answer): say so plainly,
    keep the upload, and offer to try again."""
    st.error(message, icon=":material/pause_circle:")
    st.button("Try again", icon=":material/refresh:")
    st.stop()


def chosen_age_group(predictor: Classifier) -> str | None:
    """The patient's age group as chosen above the upload; only for a model with age heads."""
    if not predictor.metadata.age_heads:
        return None
    choice = st.radio("Patient", list(AGE_CHOICES), horizontal=True, key=DIAGNOSE_AGE_GROUP,
                      help=AGE_CHOICE_HELP)
    return AGE_CHOICES[choice]


def current_state(upload, predictor: Classifier, actor: Actor,
                  age_group: str | None) -> DiagnoseState:
    """Analyse each upload once; reruns (slider, class, downloads) reuse the stored state.

    Without its audit row, or without an answer from the model server, there is no result:
    the page says why and keeps the upload, so the next click tries again.
    """
    stored = st.session_state.get(DIAGNOSE_RESULT)
    if stored is not None and stored.is_for(upload.file_id, age_group):
        return stored
    try:
        with st.spinner("Analysing the image…"):
            audited = analyse_and_record(app_database(), load_settings(), actor, upload.file_id,
                                         upload.getvalue(), upload.name, predictor, age_group)
    except AuditUnavailable:
        try_again_later(PAUSED)
    except ModelUnavailable as error:
        try_again_later(str(error))
    state = audited.state
    if state.analysis is not None:
        st.session_state[EXPLAINED_CLASS] = state.analysis.predicted_class
    st.session_state[DIAGNOSE_RESULT] = state
    st.session_state[DIAGNOSE_AUDIT_ID] = audited.audit_id
    return state


def record(action: str, **detail: str) -> None:
    """Audit a view or download of the current result (a widget callback)."""
    try:
        record_view(app_database(), require_signed_in(), st.session_state[DIAGNOSE_AUDIT_ID],
                    action, **detail)
    except AuditUnavailable:
        st.toast(PAUSED, icon=":material/error:")


def opened_from_worklist() -> DiagnoseState | None:
    """The image a worklist row opened, kept across reruns until an upload replaces it."""
    opened: OpenedRow | None = st.session_state.pop(WORKLIST_OPENED, None)
    if opened is not None:
        st.session_state[DIAGNOSE_RESULT] = opened.state
        st.session_state[DIAGNOSE_AUDIT_ID] = opened.audit_id
        if opened.state.analysis is not None:
            st.session_state[EXPLAINED_CLASS] = opened.state.analysis.predicted_class
    stored = st.session_state.get(DIAGNOSE_RESULT)
    return stored if stored is not None and stored.from_worklist else None


def show_headline(analysis: Analysis) -> None:
    with st.container(key="result", border=True):
        finding, probability = st.columns([3, 2])
        finding.metric("Most likely finding", display_name(analysis.predicted_class))
        probability.metric(
            "Probability",
            f"{analysis.probability:.1%}",
            help="Calibrated: of images given this probability, about this share are this class.",
        )
        st.plotly_chart(
            probability_chart(analysis.prediction),
            config={"displayModeBar": False},
            key="probabilities",
        )
        how_read = age_caption(analysis.prediction)
        if how_read:
            st.caption(how_read)
        for warning in age_warnings(analysis.prediction):
            st.warning(warning, icon=":material/warning:")
        st.caption(
            f"{plain(analysis.file_name)} · analysed in {analysis.seconds:.2f} s · "
            f"model version {analysis.prediction.model_version}"
        )
    st.info(NOTICE, icon=":material/info:")


def show_validation(metadata: Metadata, class_name: str) -> None:
    """Say plainly where this model was not validated, most of all for the suggested class."""
    warning = validation_warning(metadata, class_name)
    if warning:
        st.warning(warning, icon=":material/warning:")
    gaps = not_validated(metadata)
    if gaps:
        st.caption("**Not validated on:** " + "; ".join(gaps) + ". See the model card.")


def show_site_validation(site: str | None) -> None:
    """Whether the model was validated at this site; until it is, the notice with a figure."""
    with st.container(key="site_validation"):
        if site is None:
            st.warning(site_notice(None, run_dir()), icon=":material/warning:")
        else:
            st.caption(site_notice(site, run_dir()))


def show_acquisition(analysis: Analysis) -> None:
    """Non-identifying facts about the image (DICOM: modality, view, body part, size)."""
    if analysis.image.facts:
        facts = analysis.image.facts.items()
        st.caption("**Image** · " + " · ".join(f"{plain(name)}: {plain(value)}"
                                              for name, value in facts))


def explained_by_its_model(class_name: str, predictor: Classifier) -> Analysis:
    """The open analysis with a Grad-CAM for ``class_name`` from the model that produced it; if
    that model is no longer loaded, the film is analysed again by ``predictor``, and the page
    says so."""
    audited = AuditedState(st.session_state[DIAGNOSE_RESULT], st.session_state[DIAGNOSE_AUDIT_ID])
    with st.spinner(f"Explaining {display_name(class_name)}…"):
        try:
            audited, message = explain_with_its_model(
                app_database(), require_signed_in(), audited, class_name,
                served_model(audited.state.analysis.prediction.model_version), predictor)
        except ModelUnavailable as error:
            try_again_later(str(error))
        except AuditUnavailable:
            try_again_later(PAUSED)
    st.session_state[DIAGNOSE_RESULT] = audited.state
    st.session_state[DIAGNOSE_AUDIT_ID] = audited.audit_id
    if message:
        st.warning(message, icon=":material/swap_horiz:")
    if audited.state.error is not None:
        st.error(plain(audited.state.error), icon=":material/error:")
        st.stop()
    return audited.state.analysis


def show_images(analysis: Analysis, predictor: Classifier) -> tuple[Analysis, str, float]:
    """Original and Grad-CAM overlay side by side; returns the analysis with the chosen map."""
    choose_class, choose_opacity = st.columns(2)
    class_name = choose_class.selectbox(
        "Explain the class", predictor.classes, format_func=display_name, key=EXPLAINED_CLASS,
        on_change=lambda: st.session_state.update({HEATMAP_CHOSEN: True}),
    )
    opacity = choose_opacity.slider(
        "Heatmap opacity", 0.0, 1.0, 0.4, 0.05, key="overlay_opacity"
    )
    outline = analysis.lungs is not None and analysis.lungs.found and st.toggle(
        "Lung outline", value=True, key="lung_outline",
        help="The lung fields found by the lung segmenter, drawn on both images.")
    if class_name not in analysis.heatmaps:
        analysis = explained_by_its_model(class_name, predictor)
    if st.session_state.pop(HEATMAP_CHOSEN, False):  # audited once its map exists, by its model
        record(HEATMAP_VIEWED, class_name=class_name)
    original, explained = st.columns(2)
    with original:
        original_image = display_image(analysis, DISPLAY_SIDE)
        st.image(with_outline(original_image, analysis.lungs) if outline else original_image,
                 caption="Original", width="stretch")
    with explained, st.container(key="overlay"):
        st.image(
            overlay_image(analysis, class_name, opacity, DISPLAY_SIDE, outline=outline),
            caption=f"Grad-CAM: where the model looked for {display_name(class_name)}",
            width="stretch",
        )
    show_attention(analysis, class_name)
    return analysis, class_name, opacity


def show_attention(analysis: Analysis, class_name: str) -> None:
    """How much of the map lies inside the lungs, in words; a warning when under half."""
    attention = analysis.attention(class_name)
    if attention is None:
        return
    with st.container(key="attention"):
        if not attention.lungs.found:
            st.warning(in_words(attention), icon=":material/warning:")
            return
        st.markdown(in_words(attention))
        if attention.low:
            st.warning(LOW_SHARE_WARNING, icon=":material/warning:")


def show_downloads(analysis: Analysis, class_name: str, opacity: float) -> None:
    """Overlay, result and report downloads; each download is audited."""
    stem = analysis.file_name.rsplit(".", 1)[0] or "xray"
    downloads = [
        ("Overlay (PNG)", lambda: overlay_png(analysis, class_name, opacity),
         f"{stem}_gradcam_{class_name.lower()}.png", "image/png",
         {"file": "overlay", "class_name": class_name}),
        ("Result (JSON)", result_json(analysis), f"{stem}_result.json", "application/json",
         {"file": "result"}),
        ("Report (PDF)", lambda: pdf_report(analysis, class_name, opacity, run_dir()),
         f"{stem}_report.pdf", "application/pdf", {"file": "report"}),
    ]
    for column, (label, data, file_name, mime, detail) in zip(
            st.columns(len(downloads)), downloads, strict=True):
        column.download_button(label, data=data, file_name=file_name, mime=mime,
                               icon=":material/download:", on_click=record, args=(DOWNLOAD,),
                               kwargs=detail, width="stretch", key=f"download_{detail['file']}")


def show_feedback(actor: Actor, audit_id: int, analysis: Analysis) -> None:
    """The radiologist's reading under the result: agree or not, the class read, a note."""
    database, settings = app_database(), load_settings()
    reading = reading_for(database, audit_id, actor.username)
    with st.container(key="feedback", border=True):
        st.markdown("**Your reading**")
        if reading is not None and not editable(reading, now_utc(), settings):
            st.caption(f"You read {display_name(reading.read_class)} "
                       f"({'agreeing' if reading.agrees else 'disagreeing'}); saved "
                       f"{reading.updated_at:%Y-%m-%d %H:%M} UTC and no longer editable.")
            return
        verdict = st.radio("Do you agree with the model?", ["Agree", "Disagree"],
                           index=0 if reading is None or reading.agrees else 1,
                           horizontal=True, key=f"verdict_{audit_id}")
        read_class = None
        if verdict == "Disagree":
            classes = list(analysis.probabilities)
            read_class = st.selectbox(
                "The class you read", classes, format_func=display_name,
                index=classes.index(reading.read_class) if reading else 0,
                key=f"read_class_{audit_id}")
        note = st.text_area("Note (optional)", value=reading.note if reading else "",
                            max_chars=2000, key=f"note_{audit_id}")
        if st.button("Save feedback", icon=":material/rate_review:", key="save_feedback"):
            try:
                reading = save_reading(database, settings, actor, audit_id,
                                       verdict == "Agree", read_class, note)
            except FeedbackError as error:
                st.error(str(error), icon=":material/error:")
            except AuditUnavailable:
                st.error(PAUSED, icon=":material/error:")
        if reading is not None:
            st.caption(f"Saved: {display_name(reading.read_class)} · "
                       f"{reading.updated_at:%Y-%m-%d %H:%M} UTC · you can change it for "
                       f"{settings.feedback_edit_hours:g} hours.")


actor = require_signed_in()
st.title("Diagnose")
st.caption(
    "Upload one frontal chest X-ray to see the most likely finding among normal, bacterial "
    "pneumonia, viral pneumonia and COVID-19, how sure the model is, and where it looked."
)

try:
    predictor = load_predictor(run_dir())
except ModelLoadError as error:
    st.error(model_unavailable(error, actor.role))
    st.stop()

age_group = chosen_age_group(predictor)
upload = st.file_uploader(
    "Chest X-ray (PNG, JPEG or DICOM)",
    key="upload",
    help="One image at a time; uploading another replaces the result.",
)
state = (current_state(upload, predictor, actor, age_group) if upload is not None
         else opened_from_worklist())
if state is None:
    st.session_state.pop(DIAGNOSE_RESULT, None)
    st.info(NOTICE, icon=":material/info:")
    show_site_validation(predictor.site)
    st.stop()
if state.error is not None:
    st.error(plain(state.error), icon=":material/error:")
    st.stop()
result = state.analysis

summary, images = st.columns([2, 3], gap="large")
with images:
    result, explained_class, opacity = show_images(result, predictor)
with summary:
    show_headline(result)
    show_validation(predictor.metadata, result.predicted_class)
    show_site_validation(result.prediction.validated_at_site)
    show_acquisition(result)
    show_downloads(result, explained_class, opacity)
    show_feedback(actor, st.session_state[DIAGNOSE_AUDIT_ID], result)
