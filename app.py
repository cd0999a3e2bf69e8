"""The clinician web app: page configuration and navigation only; each page lives in pages/."""

import streamlit as st

st.set_page_config(
    page_title="Chest X-ray assistant",
    page_icon=":material/radiology:",
    layout="wide",
)
st.logo("assets/logo.svg", size="large")

navigation = st.navigation(
    [
        st.Page("pages/diagnose.py", title="Diagnose", icon=":material/radiology:", default=True),
        st.Page("pages/worklist.py", title="Worklist", icon=":material/format_list_numbered:"),
        st.Page("pages/performance.py", title="Model performance", icon=":material/monitoring:"),
        st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
    ]
)
navigation.run()
