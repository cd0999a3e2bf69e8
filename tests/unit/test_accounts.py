"""Accounts on SQLite and on a real PostgreSQL server: hashes, sign-in delays, roles, the CLI."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from records import accounts
from records.accounts import CLI_ACTOR, AccountError, Actor
from records.actions import ADD_ACCOUNT, EXPORT_AUDIT, FAILED_SIGN_IN, RESET_PASSWORD, SIGN_IN
from records.audit import now_utc
from records.db import open_database
from records.settings import DATABASE_URL_ENV, Settings
from records.tables import AuditEvent, SignInThrottle, User
from testkit import REPO_ROOT

SETTINGS = Settings(data_dir=REPO_ROOT / "unused", database_url="unused")
ADMIN = Actor("ada", "admin")


@pytest.fixture
def admin(database) -> Actor:
    """An admin account that is one now: every admin action checks that inside itself."""
    accounts.add_account(database, CLI_ACTOR, ADMIN.username, "ada's password", "admin")
    return ADMIN


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


def test_passwords_are_stored_as_argon2_hashes(database, admin):
    accounts.add_account(database, admin, "rita", "s3cret pass", "radiologist")
    with database.session() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "rita"))
    assert stored.startswith("$argon2id$") and "s3cret pass" not in stored


def messages_of(database, attempts: list[tuple[str, str]], now, client: str = "here"
                ) -> list[str]:
    said = []
    for username, password in attempts:
        try:
            accounts.sign_in(database, SETTINGS, username, password, now=now, client=client)
            said.append("signed in")
        except AccountError as error:
            said.append(str(error))
    return said


def test_repeated_failures_answer_the_same_for_a_known_and_an_unknown_name(database, admin):
    accounts.add_account(database, admin, "rita", "right password", "radiologist")
    start = now_utc()
    known = messages_of(database, [("rita", "wrong")] * 6 + [("rita", "right password")], start,
                        client="one")
    unknown = messages_of(database, [("nobody", "wrong")] * 6 + [("nobody", "right password")],
                          start, client="another")
    assert known == unknown
    assert known == ["Wrong username or password."] * 5 + [
        "Too many failed sign-ins: wait 5 seconds and try again."] * 2


def test_a_stranger_cannot_lock_the_owner_out_and_the_delay_passes(database, admin):
    accounts.add_account(database, admin, "rita", "right password", "radiologist")
    start = now_utc()
    messages_of(database, [("rita", "wrong")] * 5, start, client="stranger")
    assert accounts.sign_in(database, SETTINGS, "rita", "right password", now=start,
                            client="owner").username == "rita"
    later = start + timedelta(seconds=SETTINGS.sign_in_first_delay_seconds + 0.1)
    assert messages_of(database, [("rita", "wrong")], later, client="stranger") == [
        "Wrong username or password."]  # the 6th failure: the wait doubles to 10 s
    assert messages_of(database, [("rita", "right password")],
                       later + timedelta(seconds=9), client="stranger")[0].startswith(
        "Too many failed sign-ins: wait 1 second")
    assert accounts.sign_in(database, SETTINGS, "rita", "right password",
                            now=later + timedelta(seconds=10.1), client="stranger")


def test_the_delay_is_capped(database):
    start = now_utc()
    for failure in range(12):
        now = start + timedelta(minutes=failure)  # each try after the previous delay
        messages_of(database, [("rita", "wrong")], now)
    said = messages_of(database, [("rita", "wrong")], now)
    assert said == [f"Too many failed sign-ins: wait {SETTINGS.sign_in_max_delay_seconds:.0f} "
                    "seconds and try again."]


def test_every_outcome_costs_one_password_hash_check(database, admin, monkeypatch):
    """The same work whatever the name: one argon2 verification per try (timings printed)."""
    accounts.add_account(database, admin, "rita", "right password", "radiologist")
    accounts.add_account(database, admin, "gone", "right password", "radiologist")
    accounts.set_disabled(database, admin, "gone", True)
    calls = []

    class CountingHasher(PasswordHasher):
        def verify(self, *args) -> bool:
            calls.append(args)
            return super().verify(*args)

    monkeypatch.setattr(accounts, "_hasher", CountingHasher())
    start = now_utc()
    timings = {}
    for username in ("rita", "nobody", "gone"):
        seconds = []
        for _ in range(7):  # five wrong passwords, then two tries while waiting
            calls.clear()
            began = time.perf_counter()
            messages_of(database, [(username, "wrong")], start)
            seconds.append(time.perf_counter() - began)
            assert len(calls) == 1
        timings[username] = statistics.median(seconds)
    print("sign-in median seconds (known, unknown, disabled):",
          {name: round(value, 4) for name, value in timings.items()})


def test_an_unknown_typed_name_is_stored_only_as_a_salted_hash(database):
    messages_of(database, [("my secret password", "oops")], now_utc())
    with database.session() as session:
        row = session.scalar(select(AuditEvent).where(AuditEvent.action == FAILED_SIGN_IN))
        stored = " ".join(str(value) for value in vars(row).values())
        throttle = " ".join(str(value) for value in
                            vars(session.scalar(select(SignInThrottle))).values())
    assert "my secret password" not in stored + throttle
    assert row.username == "" and '"typed_name_hash":"' in row.detail


def test_made_up_names_from_one_address_add_one_throttle_row_and_few_audit_rows(database):
    start = now_utc()
    said = messages_of(database, [(f"made-up name {index}", "wrong") for index in range(40)],
                       start, client="sprayer")
    assert said[:5] == ["Wrong username or password."] * 5
    assert set(said[5:]) == {"Too many failed sign-ins: wait 5 seconds and try again."}
    with database.session() as session:
        assert len(list(session.scalars(select(SignInThrottle)))) == 1
    # five failures and the first try of the wait; the 34 tries after it are not rows
    assert actions(database).count(FAILED_SIGN_IN) == 6


@pytest.mark.parametrize("first", ["rita", "made-up"])
def test_the_wait_after_failures_does_not_tell_whether_a_name_exists(database, admin, first):
    accounts.add_account(database, admin, "rita", "right password", "radiologist")
    start = now_utc()
    messages_of(database, [(first, "wrong")] * 5, start, client="prober")
    assert messages_of(database, [("another made-up", "x"), ("rita", "x")], start,
                       client="prober") == [
        "Too many failed sign-ins: wait 5 seconds and try again."] * 2


def test_an_admin_unlocks_an_account_from_every_client(database, admin):
    accounts.add_account(database, admin, "rita", "right password", "radiologist")
    start = now_utc()
    for client in ("a", "b"):
        messages_of(database, [("rita", "wrong")] * 5, start, client=client)
    def rita_locked_until():
        return next(row.locked_until for row in accounts.list_accounts(database, now=start)
                    if row.username == "rita")

    assert rita_locked_until() is not None
    accounts.unlock(database, admin, "rita")
    assert rita_locked_until() is None
    assert messages_of(database, [("rita", "right password")], start, client="a") == [
        "signed in"]
    assert "admin:unlock-account" in actions(database)


def test_an_unknown_user_gets_the_same_message_as_a_wrong_password(database):
    with pytest.raises(AccountError, match="^Wrong username or password.$"):
        accounts.sign_in(database, SETTINGS, "nobody-here", "whatever")


def test_a_disabled_account_cannot_sign_in_and_loses_its_role(database, admin):
    accounts.add_account(database, admin, "rita", "right password", "radiologist")
    accounts.set_disabled(database, admin, "rita", True)
    with pytest.raises(AccountError):
        accounts.sign_in(database, SETTINGS, "rita", "right password")
    assert accounts.current_role(database, "rita") is None
    with pytest.raises(AccountError, match="your own account"):
        accounts.set_disabled(database, admin, "ada", True)


def test_a_reset_password_replaces_the_old_one_and_lifts_the_lock(database, admin):
    accounts.add_account(database, admin, "rita", "old password", "radiologist")
    for _ in range(5):
        with pytest.raises(AccountError):
            accounts.sign_in(database, SETTINGS, "rita", "wrong")
    accounts.reset_password(database, admin, "rita", "new password")
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


def test_two_first_admin_submissions_at_once_create_one_admin(database):
    barrier = threading.Barrier(2)

    def submit(name: str) -> str:
        barrier.wait()
        try:
            accounts.create_first_admin(database, name, "long enough 1", "long enough 1")
        except AccountError as error:
            return str(error)
        return "created"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(submit, ["ada", "eve"]))
    assert outcomes == [accounts.FIRST_ADMIN_EXISTS, "created"]
    assert len(accounts.list_accounts(database)) == 1


def test_an_active_admin_exports_the_trail_and_the_export_is_audited(database, admin):
    today = now_utc().date()
    exported = accounts.export_audit(database, admin, today, today)
    assert exported.splitlines()[0].split(",")[-1] == "row_hash"
    assert actions(database)[-1] == EXPORT_AUDIT


def test_an_admin_disabled_or_demoted_meanwhile_changes_nothing_and_leaves_no_row(database,
                                                                                 admin):
    """The Actor a page kept from an earlier run is not trusted: each admin action reads the
    account inside its own transaction."""
    from records.image_store import set_keep_images

    accounts.add_account(database, admin, "rita", "right password", "radiologist")
    accounts.add_account(database, admin, "bob", "bob's password", "admin")
    accounts.set_disabled(database, CLI_ACTOR, "ada", True)  # IT, while ada's page is open
    today = now_utc().date()
    before = actions(database)
    attempts = [lambda: accounts.set_disabled(database, admin, "ada", False),
                lambda: accounts.add_account(database, admin, "eve", "long enough", "admin"),
                lambda: accounts.reset_password(database, admin, "rita", "taken over"),
                lambda: accounts.unlock(database, admin, "rita"),
                lambda: set_keep_images(database, admin, True),
                lambda: accounts.export_audit(database, admin, today, today)]
    for attempt in attempts:
        with pytest.raises(accounts.NotAnAdmin, match="Nothing was changed"):
            attempt()
    assert actions(database) == before
    assert accounts.current_role(database, "ada") is None
    assert [row.username for row in accounts.list_accounts(database)] == ["ada", "bob", "rita"]
    accounts.set_disabled(database, CLI_ACTOR, "ada", False)
    with database.session() as session:  # made a radiologist while the admin page was open
        session.get(User, session.scalar(select(User.id).where(User.username == "bob"))
                    ).role = "radiologist"
        session.commit()
    with pytest.raises(accounts.NotAnAdmin):
        accounts.set_disabled(database, Actor("bob", "admin"), "rita", True)
    accounts.set_disabled(database, admin, "rita", True)  # ada is an admin again: it works
