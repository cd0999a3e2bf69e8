"""Worklist: triage many chest X-rays at once (uploads, a .zip, or a PACS query), most
suspicious first; open a row in the Diagnose view; export CSV; send results to the PACS."""

import streamlit as st

from model.errors import ModelLoadError
from model.labels import display_name
from pacs.client import PacsClient
from pacs.errors import PacsError
from pacs.settings import PacsSettings, from_environment
from pacs.studies import StudyQuery
from records.accounts import Actor
from records.audit import AuditUnavailable
from records.settings import load_settings
from serving.client import ModelUnavailable
from webapp.analysis import AGE_CHOICE_HELP, AGE_CHOICES, NOTICE
from webapp.audited_worklist import (
    WORKLIST_PACS,
    BatchCutShort,
    TooManyBatches,
    audited_upload_batch,
    check_batch_rate,
    new_batch,
    record_batch_done,
    record_export,
    record_pacs_batch,
    record_sent,
    study_model_version,
)
from webapp.lung_fields import segmenter
from webapp.page_state import (
    WORKLIST_AGE_GROUP,
    WORKLIST_CUT_SHORT,
    WORKLIST_MESSAGES,
    WORKLIST_OPENED,
    WORKLIST_ROWS,
    OpenedRow,
)
from webapp.plain_text import plain
from webapp.resources import (
    app_database,
    load_predictor,
    model_unavailable,
    run_dir,
    served_model,
)
from webapp.session import PAUSED, require_signed_in
from webapp.worklist import (
    WorklistRow,
    open_row,
    pixel_budget,
    triage_pacs,
)
from webapp.worklist_results import send_study_results, sendable_studies
from webapp.worklist_table import (
    HEAT_IN_LUNGS,
    NOT_NORMAL,
    looked_outside_lungs,
    sorted_rows,
    table,
    to_csv,
)


def chosen_age_group(predictor) -> str | None:
    """The patients' age group for the whole batch; only for a model with age heads."""
    if not predictor.metadata.age_heads:
        return None
    choice = st.radio("Patients", list(AGE_CHOICES), horizontal=True, key=WORKLIST_AGE_GROUP,
                      help=AGE_CHOICE_HELP)
    return AGE_CHOICES[choice]


def progress_bar(label: str):
    bar = st.progress(0.0, text=label)
    return lambda done, total: bar.progress(done / max(1, total), text=f"{label} {done}/{total}")


def from_uploads(predictor, actor: Actor, age_group: str | None) -> None:
    files = st.file_uploader("Chest X-rays, DICOM files or a .zip of them", key="worklist_files",
                             accept_multiple_files=True)
    if st.button("Analyse the batch", disabled=not files, type="primary"):
        settings = load_settings()
        resume = st.session_state.pop(WORKLIST_CUT_SHORT, None)
        try:
            if resume is None:
                check_batch_rate(app_database(), actor, settings.worklist_batches_per_minute)
            rows, messages = audited_upload_batch(
                app_database(), actor, [(file.name, file.getvalue()) for file in files],
                predictor, settings, progress_bar("Analysing"), age_group, resume)
            st.session_state[WORKLIST_ROWS] = rows
        except TooManyBatches as refusal:
            st.error(plain(refusal), icon=":material/hourglass:")
            st.stop()
        except BatchCutShort as cut:
            st.session_state[WORKLIST_CUT_SHORT] = cut.resume
            st.session_state[WORKLIST_ROWS] = list(cut.resume.rows)
            st.session_state[WORKLIST_MESSAGES] = []
            st.error(plain(f"{cut} {len(cut.resume.rows)} images were analysed and recorded "
                           "before it stopped; they are listed below. The files stay "
                           "selected: press Analyse the batch again to go on with the rest."),
                     icon=":material/pause_circle:")
            return
        except AuditUnavailable:
            st.session_state.pop(WORKLIST_ROWS, None)
            st.error(PAUSED, icon=":material/pause_circle:")
            st.stop()
        st.session_state[WORKLIST_MESSAGES] = messages


def send_and_record(settings: PacsSettings, rows, study_key: str, predictor,
                    actor: Actor) -> tuple[bool, str]:
    """Send one study's results and audit it; (success, the message for the page)."""
    stored, message = send_study_results(settings, rows, study_key, predictor)
    try:
        record_sent(app_database(), actor, study_key, stored, message,
                    study_model_version(rows, study_key))
    except AuditUnavailable:
        return stored, f"{message} {PAUSED}"
    return stored, message


def export(rows: list[WorklistRow]) -> None:
    """Audit the CSV download (a widget callback)."""
    try:
        record_export(app_database(), require_signed_in(), rows)
    except AuditUnavailable:
        st.toast(PAUSED, icon=":material/error:")


def from_pacs(predictor, settings, actor: Actor, age_group: str | None) -> None:
    if settings is None:
        st.info("No PACS is configured: set CXR_PACS_URL (and the login) to query one.",
                icon=":material/info:")
        return
    since, until, part = st.columns(3)
    first = since.date_input("Studies from", value=None, key="pacs_since")
    last = until.date_input("to", value=None, key="pacs_until")
    body_part = part.text_input("Body part (optional)", key="pacs_body_part").strip() or None
    automatic = st.checkbox("Send results to the PACS automatically", key="pacs_auto_send")
    if st.button("Query the PACS", type="primary"):
        batch = new_batch()
        try:
            check_batch_rate(app_database(), actor, load_settings().worklist_batches_per_minute)
        except TooManyBatches as refusal:
            st.error(str(refusal), icon=":material/hourglass:")
            return
        query = StudyQuery(since=first and first.strftime("%Y%m%d"),
                           until=last and last.strftime("%Y%m%d"), body_part=body_part)
        try:
            client = PacsClient(settings)
            rows = triage_pacs(client, query, predictor, progress=progress_bar("Analysing"),
                               age_group=age_group, budget=pixel_budget(load_settings()))
        except (PacsError, ModelUnavailable) as error:
            st.error(plain(error), icon=":material/error:")
            return
        try:
            rows = record_pacs_batch(app_database(), actor, rows, batch)
            record_batch_done(app_database(), actor, batch, WORKLIST_PACS, rows, 0)
        except AuditUnavailable:
            st.session_state.pop(WORKLIST_ROWS, None)
            st.error(PAUSED, icon=":material/pause_circle:")
            st.stop()
        st.session_state[WORKLIST_ROWS], st.session_state[WORKLIST_MESSAGES] = rows, []
        if automatic:
            for study_key in sendable_studies(rows):
                st.session_state[WORKLIST_MESSAGES].append(
                    send_and_record(settings, rows, study_key, predictor, actor)[1])


actor = require_signed_in()
st.title("Worklist")
st.caption("Many chest X-rays at once, the most suspicious first. Studies are shown by an "
           "opaque key, their date and description; identities stay in the PACS.")
try:
    predictor = load_predictor(run_dir())
except ModelLoadError as error:
    st.error(model_unavailable(error, actor.role))
    st.stop()
settings = from_environment()
age_group = chosen_age_group(predictor)

source = st.segmented_control("Images from", ["Upload", "PACS"], default="Upload",
                              key="worklist_source")
if source == "PACS":
    from_pacs(predictor, settings, actor, age_group)
else:
    from_uploads(predictor, actor, age_group)

rows = st.session_state.get(WORKLIST_ROWS)
for message in st.session_state.get(WORKLIST_MESSAGES, []):
    st.warning(plain(message), icon=":material/warning:")
if not rows:
    st.info(NOTICE, icon=":material/info:")
    st.stop()

lungs_shown = segmenter() is not None
choices = [NOT_NORMAL, *predictor.classes, *([HEAT_IN_LUNGS] if lungs_shown else [])]
sort_by = st.selectbox("Sort by", choices, key="worklist_sort",
                       format_func=lambda name: name if name in (NOT_NORMAL, HEAT_IN_LUNGS)
                       else display_name(name))
ordered = sorted_rows(rows, sort_by)
if lungs_shown and st.checkbox("Only films where the model looked mostly outside the lungs",
                               key="worklist_outside_lungs"):
    ordered = looked_outside_lungs(ordered)
viewer_url = settings.viewer_url if settings else None
with st.container(key="worklist"):
    selection = st.dataframe(
        table(ordered, predictor.classes, sort_by, viewer_url), key="worklist_table",
        on_select="rerun", selection_mode="single-row", hide_index=True, row_height=64,
        column_config={
            "thumbnail": st.column_config.ImageColumn("X-ray"),
            "score": st.column_config.ProgressColumn(
                "1 - heat in lungs" if sort_by == HEAT_IN_LUNGS else f"P({sort_by})",
                min_value=0, max_value=1),
            "heat in lungs": st.column_config.NumberColumn(
                "Heat in lungs", format="percent",
                help="Share of the model's attention (Grad-CAM) inside the lung fields"),
            "viewer": st.column_config.LinkColumn("PACS viewer", display_text="Open"),
        },
    )
st.caption(f"{len(rows)} images · select a row to open it in the Diagnose view.")
if selection.selection.rows:
    with st.spinner("Opening the image…"):
        opened = ordered[selection.selection.rows[0]]
        try:
            st.session_state[WORKLIST_OPENED] = OpenedRow(
                open_row(opened, served_model(opened.prediction.model_version)),
                opened.audit_id)
        except ModelUnavailable as error:
            st.error(f"{error} Select the row again to retry.", icon=":material/pause_circle:")
            st.stop()
    st.switch_page("views/diagnose.py")

st.download_button("Worklist (CSV)", data=to_csv(ordered, predictor.classes, sort_by),
                   file_name="worklist.csv", mime="text/csv", icon=":material/download:",
                   on_click=export, args=(ordered,))

studies = sendable_studies(ordered)
if studies and settings is not None:
    study, send = st.columns([3, 1], vertical_alignment="bottom")
    study_key = study.selectbox("Study", studies, key="worklist_send_study")
    if send.button("Send results to the PACS", key="worklist_send"):
        with st.spinner("Storing the report and heatmap…"):
            stored, message = send_and_record(settings, rows, study_key, predictor, actor)
        (st.success if stored else st.error)(plain(message))
