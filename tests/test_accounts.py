"""Accounts on SQLite and on a real PostgreSQL server: hashes, lockout, roles, the CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from records import accounts
from records.accounts import CLI_ACTOR, AccountError, Actor
from records.actions import ADD_ACCOUNT, FAILED_SIGN_IN, RESET_PASSWORD, SIGN_IN
from records.audit import now_utc
from records.db import open_database
from records.settings import DATABASE_URL_ENV, Settings
from records.tables import AuditEvent, User
from testkit import REPO_ROOT

SETTINGS = Settings(data_dir=REPO_ROOT / "unused", database_url="unused")
ADMIN = Actor("ada", "admin")


def actions(database) -> list[str]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


def test_the_first_admin_is_created_once_and_can_sign_in(database):
    assert not accounts.has_accounts(database)
    with pytest.raises(AccountError, match="differ"):
        accounts.create_first_admin(database, "ada", "long enough 1", "long enough 2")

    accounts.create_first_admin(database, "ada", "long enough 1", "long enough 1")

    assert accounts.has_accounts(database)
    with pytest.raises(AccountError, match="exists already"):
        accounts.create_first_admin(database, "eve", "long enough 1", "long enough 1")
    assert accounts.sign_in(database, SETTINGS, "ada", "long enough 1") == ADMIN
    assert actions(database) == [ADD_ACCOUNT, SIGN_IN]


def test_passwords_are_stored_as_argon2_hashes(database):
    accounts.add_account(database, ADMIN, "rita", "s3cret pass", "radiologist")
    with database.session() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "rita"))
    assert stored.startswith("$argon2id$") and "s3cret pass" not in stored


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(database):
    accounts.add_account(database, ADMIN, "rita", "right password", "radiologist")
    start = now_utc()
    for _ in range(5):
        with pytest.raises(AccountError, match="Wrong username or password"):
            accounts.sign_in(database, SETTINGS, "rita", "wrong", now=start)

    with pytest.raises(AccountError, match="locked for 15 more minutes"):
        accounts.sign_in(database, SETTINGS, "rita", "right password", now=start)
    with pytest.raises(AccountError, match="locked"):
        accounts.sign_in(database, SETTINGS, "rita", "right password",
                         now=start + timedelta(minutes=14))
    later = start + timedelta(minutes=15, seconds=1)
    assert accounts.sign_in(database, SETTINGS, "rita", "right password", now=later).role == (
        "radiologist")
    assert actions(database).count(FAILED_SIGN_IN) == 7


def test_an_unknown_user_gets_the_same_message_as_a_wrong_password(database):
    with pytest.raises(AccountError, match="^Wrong username or password.$"):
        accounts.sign_in(database, SETTINGS, "nobody-here", "whatever")


def test_a_disabled_account_cannot_sign_in_and_loses_its_role(database):
    accounts.add_account(database, ADMIN, "rita", "right password", "radiologist")
    accounts.set_disabled(database, ADMIN, "rita", True)
    with pytest.raises(AccountError):
        accounts.sign_in(database, SETTINGS, "rita", "right password")
    assert accounts.current_role(database, "rita") is None
    with pytest.raises(AccountError, match="your own account"):
        accounts.set_disabled(database, ADMIN, "ada", True)


def test_a_reset_password_replaces_the_old_one_and_lifts_the_lock(database):
    accounts.add_account(database, ADMIN, "rita", "old password", "radiologist")
    for _ in range(5):
        with pytest.raises(AccountError):
            accounts.sign_in(database, SETTINGS, "rita", "wrong")
    accounts.reset_password(database, ADMIN, "rita", "new password")
    with pytest.raises(AccountError):
        accounts.sign_in(database, SETTINGS, "rita", "old password")
    assert accounts.sign_in(database, SETTINGS, "rita", "new password").username == "rita"


def test_idle_sessions_expire_after_the_configured_time():
    seen = now_utc()
    idle = timedelta(minutes=SETTINGS.session_idle_minutes)
    assert not accounts.is_idle_expired(seen, seen + idle, SETTINGS)
    assert accounts.is_idle_expired(seen, seen + idle + timedelta(seconds=1), SETTINGS)


def test_bad_roles_short_passwords_and_duplicates_are_refused(database):
    with pytest.raises(AccountError, match="role"):
        accounts.add_account(database, CLI_ACTOR, "rita", "long enough", "superuser")
    with pytest.raises(AccountError, match="at least 8"):
        accounts.add_account(database, CLI_ACTOR, "rita", "short", "radiologist")
    accounts.add_account(database, CLI_ACTOR, "rita", "long enough", "radiologist")
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_account(database, CLI_ACTOR, "rita", "long enough", "admin")


def users_cli(database_url: str, *arguments: str, password: str = ""
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "records.users", *arguments], input=password,
                          cwd=REPO_ROOT, env={DATABASE_URL_ENV: database_url, "PATH": ""},
                          capture_output=True, text=True, timeout=120)


def test_the_users_cli_adds_lists_disables_and_resets(database_url):
    added = users_cli(database_url, "add", "rita", "--role", "radiologist",
                      password="cli password\n")
    assert added.returncode == 0, added.stderr
    listed = users_cli(database_url, "list")
    assert "rita\tradiologist\tactive" in listed.stdout
    assert users_cli(database_url, "reset-password", "rita", password="newer password\n"
                     ).returncode == 0
    database = open_database(database_url)
    try:
        assert accounts.sign_in(database, SETTINGS, "rita", "newer password").role == (
            "radiologist")
        assert users_cli(database_url, "disable", "rita").returncode == 0
        assert "rita\tradiologist\tdisabled" in users_cli(database_url, "list").stdout
        missing = users_cli(database_url, "disable", "nobody-here")
        assert missing.returncode == 1 and "No account named" in missing.stderr
        assert actions(database)[:2] == [ADD_ACCOUNT, RESET_PASSWORD]
        assert users_cli(database_url, "add", "sam@hospital.example", "--role", "admin",
                         "--sso").returncode == 0
        assert accounts.sso_sign_in(database, "sam@hospital.example").role == "admin"
    finally:
        database.engine.dispose()
