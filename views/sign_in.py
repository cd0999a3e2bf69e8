"""Sign in with a local account; repeated failures from one browser make it wait a while."""

import streamlit as st

from records.accounts import sign_in
from records.settings import load_settings
from webapp.page_state import EXPIRED, SSO_REFUSED
from webapp.plain_text import plain
from webapp.resources import app_database
from webapp.session import sign_in_with, sso_enabled

st.title("Sign in")
if st.session_state.get(EXPIRED):
    st.info("You were signed out after a while without activity. Please sign in again.",
            icon=":material/schedule:")
username = st.text_input("Username")
password = st.text_input("Password", type="password")
if st.button("Sign in"):
    sign_in_with(lambda: sign_in(app_database(), load_settings(), username, password,
                                 client=st.context.ip_address or ""))

if sso_enabled():
    st.divider()
    if SSO_REFUSED in st.session_state:
        st.error(plain(st.session_state[SSO_REFUSED]), icon=":material/error:")
        if st.button("Use another single-sign-on account"):
            st.logout()
    elif st.button("Sign in with single sign-on", icon=":material/badge:"):
        st.login()
