"""First start: the database has no account yet, so the first admin account is created here."""

import streamlit as st

from webapp.accounts import AccountError, create_first_admin, sign_in
from webapp.audit import AuditUnavailable
from webapp.resources import app_database
from webapp.session import PAUSED, start_session
from webapp.settings import load_settings

st.title("Create the first admin account")
st.caption("The database is empty. This account manages the others (Users page) and sees the "
           "admin pages; radiologists get their own accounts afterwards.")
username = st.text_input("Username")
password = st.text_input("Password", type="password")
repeat = st.text_input("Repeat password", type="password")
if st.button("Create admin account"):
    try:
        create_first_admin(app_database(), username, password, repeat)
        start_session(sign_in(app_database(), load_settings(), username, password))
    except AccountError as error:
        st.error(str(error), icon=":material/error:")
    except AuditUnavailable:
        st.error(PAUSED, icon=":material/error:")
    else:
        st.rerun()
