"""Who is signed in to this browser session: the Streamlit glue between pages and accounts.

The signed-in user lives in ``st.session_state``; every run checks the idle time and that the
account is still active with the same role, so a disabled account or a changed role takes
effect on the next click.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import streamlit as st

from records import accounts
from records.accounts import AccountError, Actor
from records.audit import AuditUnavailable, now_utc
from records.roles import ADMIN
from records.settings import load_settings
from webapp.page_state import EXPIRED, SIGNED_IN, SSO_REFUSED
from webapp.plain_text import plain
from webapp.resources import app_database

PAUSED = ("Analyses are paused until the audit trail works: it cannot be written. "
          "Your upload is kept; try again in a moment or call IT.")
SIGN_IN_UNAVAILABLE = ("Signing in is not possible right now: the database cannot be written. "
                       "Try again in a moment or call IT.")


@dataclass(frozen=True)
class SignedIn:
    actor: Actor
    last_seen: datetime


def start_session(actor: Actor) -> None:
    """Remember a successful sign-in in this browser session."""
    st.session_state[SIGNED_IN] = SignedIn(actor, now_utc())
    st.session_state.pop(EXPIRED, None)


def sign_in_with(sign_in: Callable[[], Actor]) -> None:
    """Run a sign-in (or the first admin's creation): start the session and open Diagnose, or
    say why not."""
    try:
        start_session(sign_in())
    except AccountError as error:
        st.error(plain(error), icon=":material/error:")
    except AuditUnavailable:
        st.error(SIGN_IN_UNAVAILABLE, icon=":material/error:")
    else:
        st.rerun()


def end_session(reason: str = "signed out") -> None:
    """Sign out (audited) and forget everything this browser session held."""
    signed = st.session_state.get(SIGNED_IN)
    if signed is not None:
        try:
            accounts.sign_out(app_database(), signed.actor, reason)
        except AuditUnavailable:  # signing out must always work; the row is lost, not the exit
            pass
    for key in list(st.session_state):
        del st.session_state[key]
    if st.user.get("is_logged_in"):
        st.logout()


def sso_enabled() -> bool:
    """Single sign-on is on when Streamlit's ``[auth]`` secrets configure a provider."""
    return st.user.get("is_logged_in") is not None


def _single_sign_on() -> Actor | None:
    """Start a session for the identity the provider vouched for, once, if it has an account."""
    if not st.user.get("is_logged_in") or SSO_REFUSED in st.session_state:
        return None
    identity = str(st.user.get("email") or st.user.get("sub"))
    try:
        actor = accounts.sso_sign_in(app_database(), identity)
    except AccountError as error:
        st.session_state[SSO_REFUSED] = str(error)
        return None
    except AuditUnavailable:
        st.session_state[SSO_REFUSED] = SIGN_IN_UNAVAILABLE
        return None
    start_session(actor)
    return actor


def current_actor() -> Actor | None:
    """The signed-in user, or None (never signed in, idle too long, account disabled)."""
    signed = st.session_state.get(SIGNED_IN)
    if signed is None:
        return _single_sign_on()
    now = now_utc()
    if accounts.is_idle_expired(signed.last_seen, now, load_settings()):
        end_session("idle timeout")
        st.session_state[EXPIRED] = True
        return None
    role = accounts.current_role(app_database(), signed.actor.username)
    if role is None:
        end_session("account disabled")
        return None
    actor = Actor(signed.actor.username, role)
    st.session_state[SIGNED_IN] = SignedIn(actor, now)
    return actor


def require_admin() -> Actor:
    """Stop an admin page for anyone else, whatever link or URL brought them here."""
    actor = current_actor()
    if actor is None or actor.role != ADMIN:
        st.error("This page is for admins only.", icon=":material/block:")
        st.stop()
    return actor


def require_signed_in() -> Actor:
    """Stop a page for a browser session that is not signed in."""
    actor = current_actor()
    if actor is None:
        st.error("Please sign in first.", icon=":material/block:")
        st.stop()
    return actor
