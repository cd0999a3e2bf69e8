"""Local accounts: argon2 password hashes, growing delays after repeated failures, idle sessions.

Every change and every sign-in attempt is written to the audit trail by the function that
makes it, so no caller can forget; ``actor`` is who did it (an admin, or the CLI).
"""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from records import actions, audit
from records.db import Database
from records.roles import ADMIN, ROLES
from records.settings import Settings
from records.tables import AppSetting, SignInThrottle, User

MIN_PASSWORD_LENGTH = 8
WRONG = "Wrong username or password."
FIRST_ADMIN_EXISTS = "The first admin account exists already: sign in instead."
NOT_AN_ADMIN = ("Only an active admin account can do this: this account was disabled or is no "
                "longer an admin. Nothing was changed.")
# A client's throttle rows are forgotten this long after their last failure: the table holds
# only the addresses that failed recently, however many tried.
THROTTLE_MEMORY = timedelta(days=1)
_hasher = PasswordHasher()


class AccountError(ValueError):
    """A request about an account that cannot be done; the message is for a person."""


class NotAnAdmin(AccountError):
    """An admin action asked for by someone who is not an active admin now."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user (username and role)."""

    username: str
    role: str


CLI_ACTOR = Actor(audit.CLI_USER, ADMIN)


def check_admin(session: Session, actor: Actor) -> None:
    """Refuse an admin action (NotAnAdmin) unless ``actor`` is an active admin account now.

    Read inside the action's own transaction after taking the trail's write lock, so an account
    disabled a moment before, while its page was open, acts no more. The command line
    (``CLI_ACTOR`` itself, not an account of that name) is IT on the server and passes.
    """
    if actor is CLI_ACTOR:
        return
    audit.lock(session)
    user = session.scalar(select(User).where(User.username == actor.username))
    if user is None or user.disabled or user.role != ADMIN:
        raise NotAnAdmin(NOT_AN_ADMIN)


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
                role: str, only_if_first: bool = False) -> None:
    """Create an account; ``password`` None makes a single-sign-on-only account.

    ``only_if_first``: refuse once any account exists, checked after taking the audit trail's
    write lock, so two first-start submissions at the same moment create one admin.
    """
    username = _check_username(username)
    if role not in ROLES:
        raise AccountError(f"The role must be one of {', '.join(ROLES)}.")
    if password is not None:
        _check_password(password)
    with audit.audited(database) as session:
        if only_if_first:
            audit.lock(session)
            if session.scalar(select(func.count()).select_from(User)) > 0:
                raise AccountError(FIRST_ADMIN_EXISTS)
        else:
            check_admin(session, actor)
        if session.scalar(select(User).where(User.username == username)) is not None:
            raise AccountError(f"An account named {username!r} exists already.")
        session.add(User(username=username, role=role, disabled=False,
                         password_hash=None if password is None else _hasher.hash(password),
                         created_at=audit.now_utc()))
        audit.append(session, audit.Event(actor.username, actor.role,
                                          actions.ADD_ACCOUNT,
                                          detail={"account": username, "role": role}))


def create_first_admin(database: Database, username: str, password: str, repeat: str) -> Actor:
    """The first start's admin account; refused once any account exists."""
    _check_password(password, repeat)
    username = _check_username(username)
    add_account(database, Actor(username, ADMIN), username, password, ADMIN, only_if_first=True)
    return Actor(username, ADMIN)


def sign_in(database: Database, settings: Settings, username: str, password: str,
            now: datetime | None = None, client: str = "") -> Actor:
    """Check a password; every outcome is audited and none says whether the name exists.

    Unknown names, disabled accounts and wrong passwords get the same message after the same
    work (one argon2 verification, against a dummy hash when there is no account). Repeated
    failures from one ``client`` (the browser's address) make it wait a growing delay: every
    failure counts in that client's one row for all names, and a failure of an account's name
    also in that name's row from that client (what the Users page shows and an admin lifts).
    So made-up names add no rows, the delay never tells which names exist, and other clients,
    and so the account's owner, are not held up. Tries refused while waiting are audited once
    per wait. A typed name that matches no account is stored only as a salted hash: it may be
    a password typed into the wrong box.
    """
    now = now or audit.now_utc()
    username = username.strip()
    with audit.audited(database) as session:
        name_hash, client_hash = throttle_keys(session, username, client)
        user = session.scalar(select(User).where(User.username == username))
        keys = [any_name_key(session)] + ([name_hash] if user is not None else [])
        throttles = {row.name_hash: row for row in session.scalars(select(SignInThrottle).where(
            SignInThrottle.name_hash.in_(keys), SignInThrottle.client_hash == client_hash
        ).with_for_update())}
        active = user is not None and not user.disabled and user.password_hash is not None
        matches = _password_matches(user.password_hash if active else _dummy_hash(), password)
        waiting = max((row for row in throttles.values()
                       if row.blocked_until and row.blocked_until > now),
                      key=lambda row: row.blocked_until, default=None)
        if waiting is not None:
            seconds = math.ceil((waiting.blocked_until - now).total_seconds())
            outcome = "waiting after repeated failures"
            error = AccountError(f"Too many failed sign-ins: wait {seconds} second"
                                 f"{'s' if seconds != 1 else ''} and try again.")
            if not _first_try_while_waiting(waiting):
                raise error  # audited already, at the first try of this wait
        elif active and matches:
            for row in throttles.values():
                session.delete(row)
            audit.append(session, audit.Event(username, user.role, actions.SIGN_IN))
            return Actor(username, user.role)
        else:
            session.execute(delete(SignInThrottle).where(
                SignInThrottle.updated_at < now - THROTTLE_MEMORY,
                SignInThrottle.client_hash != client_hash))
            for key in keys:
                _count_failure(session, throttles.get(key), key, client_hash, now, settings)
            outcome = "wrong password" if active else "unknown or disabled account"
            error = AccountError(WRONG)
        known = user is not None
        audit.append(session, audit.Event(
            username if known else "", "", actions.FAILED_SIGN_IN,
            detail={"reason": outcome, **({} if known else {"typed_name_hash": name_hash})}))
    raise error


def throttle_keys(session: Session, username: str, client: str) -> tuple[str, str]:
    """Salted SHA-256 of a typed name and of a client: what the throttle stores of them."""
    salt = session.get(AppSetting, audit.SALT_KEY).value
    return (hashlib.sha256(f"{salt}name:{username.casefold()}".encode()).hexdigest(),
            hashlib.sha256(f"{salt}client:{client}".encode()).hexdigest())


def any_name_key(session: Session) -> str:
    """The throttle's name key of a client's row for every name (no typed name hashes to it)."""
    salt = session.get(AppSetting, audit.SALT_KEY).value
    return hashlib.sha256(f"{salt}any name".encode()).hexdigest()


def _delay(failures: int, settings: Settings) -> timedelta | None:
    """The wait after ``failures`` failures in a row; None before the first wait."""
    beyond = failures - settings.max_failed_sign_ins
    if beyond < 0:
        return None
    return timedelta(seconds=min(settings.sign_in_first_delay_seconds * 2.0 ** beyond,
                                 settings.sign_in_max_delay_seconds))


def _first_try_while_waiting(throttle: SignInThrottle) -> bool:
    """Whether this is the first try since the wait began; the row then marks it by taking the
    wait's end as its last change, so the next tries of this wait are not audited again."""
    first = throttle.updated_at < throttle.blocked_until
    throttle.updated_at = throttle.blocked_until
    return first


def _count_failure(session: Session, throttle: SignInThrottle | None, name_hash: str,
                   client_hash: str, now: datetime, settings: Settings) -> None:
    if throttle is None:
        throttle = SignInThrottle(name_hash=name_hash, client_hash=client_hash, failures=0)
        session.add(throttle)
    throttle.failures += 1
    throttle.updated_at = now
    delay = _delay(throttle.failures, settings)
    if delay is not None:
        throttle.blocked_until = now + delay


@functools.cache
def _dummy_hash() -> str:
    """An argon2 hash of a random password: unknown names cost the same verification."""
    return _hasher.hash(secrets.token_hex(16))


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


def list_accounts(database: Database, now: datetime | None = None) -> list[AccountRow]:
    """Every account; ``locked_until`` is the end of the longest sign-in delay it has now."""
    now = now or audit.now_utc()
    with database.session() as session:
        users = list(session.scalars(select(User).order_by(User.username)))
        waits = {}
        for user in users:
            name_hash = throttle_keys(session, user.username, "")[0]
            waits[user.username] = session.scalar(
                select(func.max(SignInThrottle.blocked_until)).where(
                    SignInThrottle.name_hash == name_hash, SignInThrottle.blocked_until > now))
        return [AccountRow(user.username, user.role, user.disabled, waits[user.username],
                           user.created_at) for user in users]


def export_audit(database: Database, actor: Actor, start: date, end: date) -> str:
    """The trail from ``start`` to ``end`` as CSV, for an account that is an active admin now
    (NotAnAdmin, nothing exported and no row otherwise); the export is audited first."""
    with audit.audited(database) as session:
        check_admin(session, actor)
        audit.append(session, audit.export_event(actor.username, actor.role, start, end))
    return audit.export_csv(database, start, end)


def _change(database: Database, actor: Actor, username: str, action: str,
            unlock: bool = False, **values) -> None:
    with audit.audited(database) as session:
        check_admin(session, actor)
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"No account named {username!r}.")
        for name, value in values.items():
            setattr(user, name, value)
        if unlock:  # the account's rows, and the all-names rows of the clients it failed from
            name_hash = throttle_keys(session, username, "")[0]
            clients = select(SignInThrottle.client_hash).where(
                SignInThrottle.name_hash == name_hash).scalar_subquery()
            session.execute(delete(SignInThrottle).where(
                SignInThrottle.name_hash == any_name_key(session),
                SignInThrottle.client_hash.in_(clients)))
            session.execute(delete(SignInThrottle).where(SignInThrottle.name_hash == name_hash))
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
    _change(database, actor, username, actions.RESET_PASSWORD, unlock=True,
            password_hash=_hasher.hash(password))


def unlock(database: Database, actor: Actor, username: str) -> None:
    """Lift every sign-in delay of the account, from every client."""
    _change(database, actor, username, actions.UNLOCK_ACCOUNT, unlock=True)
