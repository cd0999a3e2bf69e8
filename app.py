"""The clinician web app: page configuration and navigation only; each page lives in views/ (not
``pages/``: Streamlit would list that folder's files in the sidebar before ``st.navigation`` runs).

Which pages exist depends on who is signed in: an empty database shows only the page that
creates the first admin, a stranger only the sign-in page, a radiologist only Diagnose. Those
first two are the default page (the app's root URL, like Diagnose), so signing in lands on
Diagnose and any other URL typed while signed out lands on the sign-in page.
"""

import streamlit as st

from records.accounts import has_accounts
from records.roles import ADMIN
from webapp.plain_text import plain
from webapp.resources import app_database
from webapp.session import current_actor, end_session

st.set_page_config(
    page_title="Chest X-ray assistant",
    page_icon=":material/radiology:",
    layout="wide",
)
st.logo("assets/logo.svg", size="large")

DIAGNOSE = st.Page("views/diagnose.py", title="Diagnose", icon=":material/radiology:",
                   default=True)
WORKLIST = st.Page("views/worklist.py", title="Worklist", icon=":material/format_list_numbered:")
ADMIN_PAGES = [
    st.Page("views/performance.py", title="Model performance", icon=":material/monitoring:"),
    st.Page("views/model_card.py", title="Model card", icon=":material/description:"),
    st.Page("views/monitoring.py", title="Monitoring", icon=":material/query_stats:"),
    st.Page("views/users.py", title="Users", icon=":material/group:"),
    st.Page("views/audit_trail.py", title="Audit trail", icon=":material/verified_user:"),
    st.Page("views/sites.py", title="Sites", icon=":material/domain_add:"),
]

actor = current_actor()
if not has_accounts(app_database()):
    pages = [st.Page("views/first_admin.py", title="Create admin account",
                     icon=":material/person_add:", default=True)]
elif actor is None:
    pages = [st.Page("views/sign_in.py", title="Sign in", icon=":material/login:", default=True)]
else:
    pages = [DIAGNOSE, WORKLIST, *(ADMIN_PAGES if actor.role == ADMIN else [])]
    with st.sidebar:
        st.caption(f"Signed in as **{plain(actor.username)}** ({actor.role})")
        st.button("Sign out", icon=":material/logout:", on_click=end_session, key="sign_out")

st.navigation(pages).run()
