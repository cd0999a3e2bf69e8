"""Every key the pages keep in ``st.session_state``, and the value one page hands another.

A page reads or writes session state only through these names, so what travels between
reruns and between pages is written down here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the sign-in path imports this module; it needs no model code
    from webapp.analysis import DiagnoseState

# Who is signed in (webapp/session.py)
SIGNED_IN = "signed_in"  # the SignedIn of this browser session
EXPIRED = "session_expired"  # set when idle expiry signed the user out
SSO_REFUSED = "sso_refused"  # why a single-sign-on identity was not let in

# Diagnose (views/diagnose.py)
DIAGNOSE_RESULT = "diagnose_result"  # the DiagnoseState of the current upload or opened row
DIAGNOSE_AUDIT_ID = "diagnose_audit_id"  # the audit row of the result Diagnose shows
EXPLAINED_CLASS = "explained_class"  # the class whose Grad-CAM is shown (a widget's key)
HEATMAP_CHOSEN = "heatmap_chosen"  # a class was just chosen: audit the view once it is drawn
DIAGNOSE_AGE_GROUP = "diagnose_age_group"  # the patient's age group as chosen (a widget's key)

# Worklist (views/worklist.py)
WORKLIST_ROWS = "worklist_rows"  # the current batch's WorklistRows
WORKLIST_MESSAGES = "worklist_messages"  # what could not be read from the uploads
WORKLIST_OPENED = "worklist_opened"  # the OpenedRow on its way to Diagnose
WORKLIST_AGE_GROUP = "worklist_age_group"  # the patients' age group as chosen (a widget's key)
WORKLIST_CUT_SHORT = "worklist_cut_short"  # the CutShort batch that pressing again resumes

# Users (views/users.py)
USERS_OUTCOME = "users_outcome"  # (ok, message) of the last change


@dataclass(frozen=True)
class OpenedRow:
    """The Worklist -> Diagnose hand-off: a row's full Diagnose view and its audit row."""

    state: DiagnoseState
    audit_id: int | None
