"""Model card: what the model is, what it was trained on, and what it must not be used for."""

import streamlit as st

from webapp.analysis import NOTICE
from webapp.reports import RunFileError, read_reports
from webapp.resources import run_dir

st.title("Model card")
try:
    reports = read_reports(run_dir())
except RunFileError as error:
    st.error(str(error))
    st.stop()

if reports.metadata is None:
    st.warning(f"No model in {reports.run_dir}: metadata.json is missing.")
    st.stop()

metadata = reports.metadata
version, backbone, trained = st.columns(3)
version.metric("Model version", metadata["version"])
backbone.metric("Backbone", metadata.get("backbone", "unknown"))
trained.metric("Trained", metadata.get("created_at", "unknown")[:10],
               help=f"Created at {metadata.get('created_at', 'an unknown time')} (UTC), "
               f"git commit {metadata.get('git_commit', 'unknown')}.")
st.warning(
    "**Intended use.** Decision support for trained readers of frontal chest X-rays; not a "
    f"medical device. {NOTICE} The card below states the data and limits.",
    icon=":material/health_and_safety:",
)

with st.container(key="model_card", border=True):
    if reports.model_card is None:
        st.info(f"{reports.run_dir / 'MODEL_CARD.md'} is absent: this model has no card yet.")
    else:
        st.markdown(reports.model_card)
