"""Users, for admins: the accounts, adding one, disabling, new passwords, keeping images.

Changes run as button callbacks, before the page draws, so the table shows them at once; a
callback holds the account of the page's previous run, so each change checks, inside its own
transaction, that the account is an active admin still (records.accounts.check_admin).
"""

import streamlit as st

from records.accounts import (
    AccountError,
    add_account,
    list_accounts,
    reset_password,
    set_disabled,
    unlock,
)
from records.audit import AuditUnavailable
from records.image_store import keep_images, set_keep_images
from records.roles import ROLES
from records.settings import load_settings
from webapp.page_state import USERS_OUTCOME
from webapp.plain_text import plain
from webapp.resources import app_database
from webapp.session import PAUSED, require_admin

actor = require_admin()
database = app_database()


def attempt(change, keys: tuple[str, ...], *constants, done: str) -> None:
    """Run one audited change (a button callback) on the values of the widgets named by
    ``keys``, then ``constants``; keep how it went for the page."""
    state = st.session_state
    values = [state[key] for key in keys] + list(constants)
    try:
        change(database, actor, *values)
    except AccountError as error:
        state[USERS_OUTCOME] = (False, str(error))
    except AuditUnavailable:
        state[USERS_OUTCOME] = (False, PAUSED)
    else:
        state[USERS_OUTCOME] = (True, done.format(*values))


def add_from_form(database, actor, username: str, password: str, role: str) -> None:
    """An empty password makes a single-sign-on-only account."""
    add_account(database, actor, username, password or None, role)


st.title("Users")
if USERS_OUTCOME in st.session_state:
    ok, message = st.session_state.pop(USERS_OUTCOME)
    (st.success if ok else st.error)(plain(message))

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
    st.text_input("New username", key="new_username")
    st.text_input("Initial password", type="password", key="new_password",
                  help="Leave it empty for a single-sign-on-only account named by its e-mail.")
    st.selectbox("Role", ROLES, key="new_role")
    st.button("Add account", key="add_account", on_click=attempt,
              args=(add_from_form, ("new_username", "new_password", "new_role")),
              kwargs={"done": "Added {2} {0}."})
with change, st.container(border=True):
    st.subheader("Change an account")
    st.selectbox("Account", [row.username for row in accounts], key="chosen_account")
    disable, enable = st.columns(2)
    disable.button("Disable", key="disable_account", on_click=attempt,
                   args=(set_disabled, ("chosen_account",), True),
                   kwargs={"done": "Disabled {0}."})
    enable.button("Enable", key="enable_account", on_click=attempt,
                  args=(set_disabled, ("chosen_account",), False),
                  kwargs={"done": "Enabled {0}."})
    st.button("Unlock", key="unlock_account", on_click=attempt,
              args=(unlock, ("chosen_account",)),
              kwargs={"done": "Lifted every sign-in delay of {0}."},
              help="Lift the waits that repeated failed sign-ins put on this account.")
    st.text_input("New password", type="password", key="reset_password")
    st.button("Set new password", key="set_password", on_click=attempt,
              args=(reset_password, ("chosen_account", "reset_password")),
              kwargs={"done": "New password set for {0}; any lockout is lifted."})

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
    except AccountError as error:
        st.error(plain(str(error)), icon=":material/block:")
    except AuditUnavailable:
        st.error(PAUSED, icon=":material/error:")
