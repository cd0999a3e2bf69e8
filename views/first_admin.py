"""First start: the database has no account yet, so the first admin account is created here."""

import streamlit as st

from records.accounts import FIRST_ADMIN_EXISTS, Actor, create_first_admin, has_accounts, sign_in
from records.settings import load_settings
from webapp.resources import app_database
from webapp.session import sign_in_with


def create_and_sign_in(username: str, password: str, repeat: str) -> Actor:
    create_first_admin(app_database(), username, password, repeat)
    return sign_in(app_database(), load_settings(), username, password)


st.title("Create the first admin account")
if has_accounts(app_database()):  # opened from a tab or a link older than the first admin
    st.info(FIRST_ADMIN_EXISTS, icon=":material/login:")
    st.stop()
st.caption("The database is empty. This account manages the others (Users page) and sees the "
           "admin pages; radiologists get their own accounts afterwards.")
username = st.text_input("Username")
password = st.text_input("Password", type="password")
repeat = st.text_input("Repeat password", type="password")
if st.button("Create admin account"):
    sign_in_with(lambda: create_and_sign_in(username, password, repeat))
