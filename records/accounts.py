"""Local accounts: argon2 password hashes, lockout after repeated failures, idle sessions.

Every change and every sign-in attempt is written to the audit trail by the function that
makes it, so no caller can forget; ``actor`` is who did it (an admin, or the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from records import actions, audit
from records.db import Database
from records.roles import ADMIN, ROLES
from records.settings import Settings
from records.tables import User

MIN_PASSWORD_LENGTH = 8
_hasher = PasswordHasher()


class AccountError(ValueError):
    """A request about an account that cannot be done; the message is for a person."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user (username and role)."""

    username: str
    role: str


CLI_ACTOR = Actor(audit.CLI_USER, ADMIN)


@dataclass(frozen=True)
class AccountRow:
    """An account as the Users page and the CLI list it (never the hash)."""

    username: str
    role: str
    disabled: bool
    locked_until: datetime | None
    created_at: datetime


def _check_password(password: str, repeat: str | None = None) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if repeat is not None and password != repeat:
        raise AccountError("The two passwords differ.")


def _check_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 150:
        raise AccountError("A username needs 1 to 150 characters.")
    return username


def has_accounts(database: Database) -> bool:
    """False only on first start, when the first admin account must be created."""
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(User)) > 0


def add_account(database: Database, actor: Actor, username: str, password: str | None,
                role: str) -> None:
    """Create an account; ``password`` None makes a single-sign-on-only account."""
    username = _check_username(username)
    if role not in ROLES:
        raise AccountError(f"The role must be one of {', '.join(ROLES)}.")
    if password is not None:
        _check_password(password)
    with audit.audited(database) as session:
        if session.scalar(select(User).where(User.username == username)) is not None:
            raise AccountError(f"An account named {username!r} exists already.")
        session.add(User(username=username, role=role, disabled=False, failed_sign_ins=0,
                         password_hash=None if password is None else _hasher.hash(password),
                         created_at=audit.now_utc()))
        audit.append(session, audit.Event(actor.username, actor.role,
                                          actions.ADD_ACCOUNT,
                                          detail={"account": username, "role": role}))


def create_first_admin(database: Database, username: str, password: str, repeat: str) -> Actor:
    """The first start's admin account; refused once any account exists."""
    _check_password(password, repeat)
    if has_accounts(database):
        raise AccountError("The first admin account exists already: sign in instead.")
    username = _check_username(username)
    add_account(database, Actor(username, ADMIN), username, password, ADMIN)
    return Actor(username, ADMIN)


def sign_in(database: Database, settings: Settings, username: str, password: str,
            now: datetime | None = None) -> Actor:
    """Check a password; count failures and lock the account after too many.

    Every outcome is audited. The message never says whether the username exists.
    """
    now = now or audit.now_utc()
    username = username.strip()
    wrong = AccountError("Wrong username or password.")
    with audit.audited(database) as session:
        user = session.scalar(select(User).where(User.username == username).with_for_update())
        if user is None or user.disabled or user.password_hash is None:
            outcome, error = "unknown or disabled account", wrong
        elif user.locked_until is not None and user.locked_until > now:
            minutes = max(1, round((user.locked_until - now).total_seconds() / 60))
            outcome = "locked"
            error = AccountError(f"Too many failed sign-ins: this account is locked for "
                                 f"{minutes} more minute{'s' if minutes != 1 else ''}.")
        elif not _password_matches(user.password_hash, password):
            user.failed_sign_ins += 1
            outcome, error = "wrong password", wrong
            if user.failed_sign_ins >= settings.max_failed_sign_ins:
                user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                user.failed_sign_ins = 0
                outcome = "wrong password; account locked"
        else:
            user.failed_sign_ins, user.locked_until = 0, None
            audit.append(session, audit.Event(username, user.role, actions.SIGN_IN))
            return Actor(username, user.role)
        audit.append(session, audit.Event(username[:150], "", actions.FAILED_SIGN_IN,
                                          detail={"reason": outcome}))
    raise error


def sso_sign_in(database: Database, identity: str) -> Actor:
    """Someone the hospital's identity provider vouched for (single sign-on): the role comes
    from the account of that name (their e-mail), which an admin must have added."""
    with audit.audited(database) as session:
        user = session.scalar(select(User).where(User.username == identity))
        if user is not None and not user.disabled:
            audit.append(session, audit.Event(identity, user.role, actions.SIGN_IN,
                                              detail={"method": "single sign-on"}))
            return Actor(identity, user.role)
        audit.append(session, audit.Event(identity[:150], "", actions.FAILED_SIGN_IN, detail={
            "method": "single sign-on", "reason": "no active account"}))
    raise AccountError(f"{identity} signed in through single sign-on but has no active account "
                       "here: ask an admin to add it.")


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def sign_out(database: Database, actor: Actor, reason: str = "signed out") -> None:
    audit.record(database, audit.Event(actor.username, actor.role, actions.SIGN_OUT,
                                       detail={"reason": reason}))


def is_idle_expired(last_seen: datetime, now: datetime, settings: Settings) -> bool:
    """A session unused for longer than the configured idle time must sign in again."""
    return now - last_seen > timedelta(minutes=settings.session_idle_minutes)


def current_role(database: Database, username: str) -> str | None:
    """The account's role now, or None when it was disabled or removed since sign-in."""
    with database.session() as session:
        user = session.scalar(select(User).where(User.username == username))
        return None if user is None or user.disabled else user.role


def list_accounts(database: Database) -> list[AccountRow]:
    with database.session() as session:
        users = session.scalars(select(User).order_by(User.username))
        return [AccountRow(user.username, user.role, user.disabled, user.locked_until,
                           user.created_at) for user in users]


def _change(database: Database, actor: Actor, username: str, action: str, **values) -> None:
    with audit.audited(database) as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"No account named {username!r}.")
        for name, value in values.items():
            setattr(user, name, value)
        audit.append(session, audit.Event(actor.username, actor.role, action,
                                          detail={"account": username}))


def set_disabled(database: Database, actor: Actor, username: str, disabled: bool) -> None:
    """Disable (or enable again) an account; a disabled account cannot sign in."""
    if disabled and username == actor.username:
        raise AccountError("You cannot disable your own account.")
    action = actions.DISABLE_ACCOUNT if disabled else actions.ENABLE_ACCOUNT
    _change(database, actor, username, action, disabled=disabled)


def reset_password(database: Database, actor: Actor, username: str, password: str) -> None:
    """A new password, and the lockout lifted."""
    _check_password(password)
    _change(database, actor, username, actions.RESET_PASSWORD, password_hash=_hasher.hash(password),
            failed_sign_ins=0, locked_until=None)
