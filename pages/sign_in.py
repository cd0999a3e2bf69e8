"""Sign in with a local account; five wrong passwords lock it for a quarter of an hour."""

import streamlit as st

from webapp.accounts import AccountError, sign_in
from webapp.audit import AuditUnavailable
from webapp.resources import app_database
from webapp.session import EXPIRED, PAUSED, start_session
from webapp.settings import load_settings

st.title("Sign in")
if st.session_state.get(EXPIRED):
    st.info("You were signed out after a while without activity. Please sign in again.",
            icon=":material/schedule:")
username = st.text_input("Username")
password = st.text_input("Password", type="password")
if st.button("Sign in"):
    try:
        start_session(sign_in(app_database(), load_settings(), username, password))
    except AccountError as error:
        st.error(str(error), icon=":material/error:")
    except AuditUnavailable:
        st.error(PAUSED, icon=":material/error:")
    else:
        st.rerun()
