"""Model card: what the model is, what it was trained on, and what it must not be used for."""

import streamlit as st

from model.run_dir import METADATA_FILE, MODEL_CARD_FILE, RunFileError
from webapp.analysis import NOTICE
from webapp.reports import read_reports
from webapp.resources import run_dir
from webapp.session import require_admin

require_admin()
st.title("Model card")
try:
    reports = read_reports(run_dir())
except RunFileError as error:
    st.error(str(error))
    st.stop()

if reports.metadata is None:
    st.warning(f"No model in {reports.run_dir}: {METADATA_FILE} is missing.")
    st.stop()

metadata = reports.metadata
version, backbone, trained = st.columns(3)
version.metric("Model version", metadata.version)
backbone.metric("Backbone", metadata.backbone)
trained.metric("Trained", metadata.created_at[:10],
               help=f"Created at {metadata.created_at} (UTC), git commit {metadata.git_commit}.")
st.warning(
    "**Intended use.** Decision support for trained readers of frontal chest X-rays; not a "
    f"medical device. {NOTICE} The card below states the data and limits.",
    icon=":material/health_and_safety:",
)

with st.container(key="model_card", border=True):
    if reports.model_card is None:
        st.info(f"{reports.run_dir / MODEL_CARD_FILE} is absent: this model has no card yet.")
    else:
        st.markdown(reports.model_card)
