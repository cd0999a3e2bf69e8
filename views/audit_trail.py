"""Audit trail, for admins: check the hash chain and export a date range as CSV."""

from datetime import timedelta

import streamlit as st

from records.accounts import NOT_AN_ADMIN, NotAnAdmin, export_audit
from records.audit import (
    AuditUnavailable,
    now_utc,
    record,
    verification_event,
    verify_chain,
)
from webapp.resources import app_database
from webapp.session import PAUSED, require_admin

actor = require_admin()
database = app_database()

st.title("Audit trail")
st.caption("One row per sign-in, analysis, refusal, heatmap viewed, download, feedback and admin "
           "action; each row's keyed hash covers the row before it, so a changed, removed, "
           "inserted or rewritten row breaks the chain from there on (docs/AUDIT.md). No "
           "patient identifiers are stored.")

if st.button("Verify the chain", icon=":material/verified:", key="verify"):
    check = verify_chain(database)
    if check.intact:
        st.success(check.summary(), icon=":material/check_circle:")
    else:
        st.error(check.summary(), icon=":material/gpp_bad:")
    try:
        record(database, verification_event(actor.username, actor.role, check))
    except AuditUnavailable:
        st.error(PAUSED, icon=":material/error:")

st.subheader("Export")
today = now_utc().date()
start, end = st.columns(2)
first_day = start.date_input("From (UTC)", today - timedelta(days=30), key="export_start")
last_day = end.date_input("To (UTC)", today, key="export_end")


def export_for_this_admin() -> str:
    """Read when the button is pressed, for the account as it is then: an admin disabled while
    this page was open gets no rows (and the next run signs them out)."""
    try:
        return export_audit(database, actor, first_day, last_day)
    except NotAnAdmin:
        return NOT_AN_ADMIN
    except AuditUnavailable:
        return PAUSED


st.download_button(
    "Export CSV", data=export_for_this_admin,
    file_name=f"audit_{first_day}_{last_day}.csv", mime="text/csv",
    icon=":material/download:", key="export_csv",
)
