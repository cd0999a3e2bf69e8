"""Users, for admins: the accounts, adding one, disabling, new passwords, keeping images."""

import streamlit as st

from webapp.accounts import (
    AccountError,
    add_account,
    list_accounts,
    reset_password,
    set_disabled,
)
from webapp.audit import AuditUnavailable
from webapp.image_store import keep_images, set_keep_images
from webapp.resources import app_database
from webapp.roles import ROLES
from webapp.session import PAUSED, require_admin
from webapp.settings import load_settings

actor = require_admin()
database = app_database()


def attempt(change, *arguments, done: str) -> None:
    """Run one audited account change and say how it went."""
    try:
        change(database, actor, *arguments)
    except AccountError as error:
        st.error(str(error), icon=":material/error:")
    except AuditUnavailable:
        st.error(PAUSED, icon=":material/error:")
    else:
        st.success(done, icon=":material/check_circle:")


st.title("Users")
accounts = list_accounts(database)
st.dataframe(
    [{"Username": row.username, "Role": row.role,
      "Status": "disabled" if row.disabled else "active",
      "Locked until (UTC)": row.locked_until, "Created (UTC)": row.created_at}
     for row in accounts],
    hide_index=True, key="accounts",
)

add, change = st.columns(2, gap="large")
with add, st.container(border=True):
    st.subheader("Add an account")
    new_name = st.text_input("New username", key="new_username")
    new_password = st.text_input("Initial password", type="password", key="new_password")
    new_role = st.selectbox("Role", ROLES, key="new_role")
    if st.button("Add account", key="add_account"):
        attempt(add_account, new_name, new_password, new_role,
                done=f"Added {new_role} {new_name}.")
with change, st.container(border=True):
    st.subheader("Change an account")
    names = [row.username for row in accounts]
    chosen = st.selectbox("Account", names, key="chosen_account")
    disable, enable = st.columns(2)
    if disable.button("Disable", key="disable_account"):
        attempt(set_disabled, chosen, True, done=f"Disabled {chosen}.")
    if enable.button("Enable", key="enable_account"):
        attempt(set_disabled, chosen, False, done=f"Enabled {chosen}.")
    password = st.text_input("New password", type="password", key="reset_password")
    if st.button("Set new password", key="set_password"):
        attempt(reset_password, chosen, password,
                done=f"New password set for {chosen}; any lockout is lifted.")

st.subheader("Images")
kept = keep_images(database)
keep = st.toggle(
    "Keep de-identified images of analysed uploads", value=kept, key="keep_images",
    help=f"Pixels only, as PNG, in {load_settings().images_dir}: no header, no file name. "
    "`python -m training.export_feedback` turns the ones radiologists labelled into a "
    "training set. Off by default.")
if keep != kept:
    try:
        set_keep_images(database, actor, keep)
    except AuditUnavailable:
        st.error(PAUSED, icon=":material/error:")
