"""Sign-in, roles, the audit trail and feedback in a real browser (Debian's Chromium).

One server per module on the factory model, its data folder (SQLite database) in a temp
folder the tests read back; the X-rays are real ones from ../shared/data/cxr4.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from sqlalchemy import select

from records import accounts, actions, audit
from records.db import open_database
from records.settings import DATABASE_FILE
from records.tables import AuditEvent, Feedback
from testkit.browser_app import (
    BROWSER_ADMIN,
    RESULT,
    cli_prediction,
    first_xray,
    prepare_data_dir,
    running_app,
    sign_in,
    upload,
    wait_for_result,
)
from testkit.dicom_factory import FAKE_PATIENT, make_dicom

TIMEOUT_MS = 60_000
READER = ("reader", "reader password", "radiologist")
LOCKED = ("forgetful", "forgetful password", "radiologist")
REVOKED = ("admin2", "admin2 password", "admin")  # first by name: the Users page's default


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    prepare_data_dir(folder, ((*BROWSER_ADMIN, "admin"), READER, LOCKED, REVOKED))
    return folder


@pytest.fixture(scope="module")
def app_url(factory_run_dir, data_dir, tmp_path_factory) -> Iterator[str]:
    with running_app(factory_run_dir, data_dir, tmp_path_factory.mktemp("log") / "app.log"
                     ) as url:
        yield url


@pytest.fixture
def database(data_dir):
    opened = open_database(f"sqlite:///{data_dir / DATABASE_FILE}")
    yield opened
    opened.engine.dispose()


def signed_in(page, url: str, account: tuple[str, ...]):
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    sign_in(page, account[0], account[1])
    page.get_by_test_id("stFileUploader").wait_for()
    return page


def test_first_start_creates_the_admin_and_lands_on_diagnose(page, factory_run_dir,
                                                              tmp_path):
    data_dir = tmp_path / "fresh"
    with running_app(factory_run_dir, data_dir, tmp_path / "app.log") as url:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_label("Username", exact=True).fill("chief")
        page.get_by_label("Password", exact=True).fill("chief password")
        page.get_by_label("Repeat password", exact=True).fill("chief password")
        page.get_by_role("button", name="Create admin account").click()
        page.get_by_test_id("stFileUploader").wait_for()
        page.get_by_role("link", name="Users").wait_for()
    assert (data_dir / DATABASE_FILE).is_file()


def failed_sign_ins(database, username: str) -> int:
    with database.session() as session:
        return len(session.scalars(select(AuditEvent.id).where(
            AuditEvent.action == actions.FAILED_SIGN_IN, AuditEvent.username == username)).all())


def wait_until(condition, seconds: float = 60.0) -> None:
    """Poll until the server has done what the browser asked (each click is one run)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.1)


def test_five_wrong_passwords_make_this_browser_wait_then_the_password_works(page, app_url,
                                                                             database):
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    errors = page.get_by_test_id("stAlertContentError")
    for attempt in range(1, 6):
        sign_in(page, LOCKED[0], "wrong password")
        wait_until(lambda: failed_sign_ins(database, LOCKED[0]) == attempt)  # noqa: B023
        errors.filter(has_text="Wrong username or password").wait_for()
    sign_in(page, LOCKED[0], LOCKED[1])
    errors.filter(has_text="Too many failed sign-ins: wait").wait_for()
    assert page.get_by_test_id("stFileUploader").count() == 0
    page.wait_for_timeout(5_000)  # the first wait (sign_in_first_delay_seconds)
    sign_in(page, LOCKED[0], LOCKED[1])
    page.get_by_test_id("stFileUploader").wait_for()


def test_a_radiologist_reaches_no_admin_page_by_link_or_url(page, app_url):
    signed_in(page, app_url, READER)
    page.get_by_text(f"Signed in as {READER[0]}").wait_for()
    for title in ("Model performance", "Model card", "Monitoring", "Users", "Audit trail"):
        assert page.get_by_role("link", name=title).count() == 0
    for path in ("performance", "monitoring", "users", "audit_trail"):
        page.goto(f"{app_url}/{path}")  # a new browser session: it must sign in again
        dialog = page.get_by_role("dialog")
        dialog.filter(has_text="Page not found").wait_for()
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        sign_in(page, READER[0], READER[1])
        page.get_by_test_id("stFileUploader").wait_for()
        assert page.locator("h1").first.inner_text() == "Diagnose"
        assert page.locator(".js-plotly-plot").count() == 0


def test_an_upload_writes_exactly_one_audit_row_with_its_fields(page, app_url, database,
                                                                factory_run_dir, cxr4_dir):
    xray = first_xray(cxr4_dir, "BACTERIAL_PNEUMONIA")
    before = audit.verify_chain(database).rows_checked
    signed_in(page, app_url, READER)
    upload(page, xray)
    wait_for_result(page, xray.name)

    with database.session() as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.seq > before)))
    analyses = [row for row in rows if row.action == actions.ANALYSIS]
    assert len(analyses) == 1, [row.action for row in rows]
    row = analyses[0]
    assert (row.username, row.role) == (READER[0], READER[2])
    assert row.image_sha256 == hashlib.sha256(xray.read_bytes()).hexdigest()
    assert row.image_bytes == xray.stat().st_size
    assert row.label == cli_prediction(factory_run_dir, xray)
    assert row.model_version and row.latency_ms > 0 and row.probabilities
    assert audit.verify_chain(database).intact


def test_a_pdf_report_download_is_audited_and_is_a_pdf(page, app_url, database, cxr4_dir):
    xray = first_xray(cxr4_dir, "NORMAL")
    signed_in(page, app_url, READER)
    upload(page, xray)
    wait_for_result(page, xray.name)
    before = audit.verify_chain(database).rows_checked
    with page.expect_download() as download:
        page.get_by_role("button", name="Report (PDF)").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")

    def downloads() -> list[AuditEvent]:
        with database.session() as session:
            return list(session.scalars(select(AuditEvent).where(
                AuditEvent.seq > before, AuditEvent.action == actions.DOWNLOAD)))

    wait_until(lambda: downloads())
    (row,) = downloads()
    assert row.username == READER[0] and '"file":"report"' in row.detail
    assert xray.stem not in row.detail
    assert audit.verify_chain(database).intact


def test_feedback_is_saved_and_shown_on_monitoring(page, app_url, database, cxr4_dir):
    xray = first_xray(cxr4_dir, "VIRAL_PNEUMONIA")
    signed_in(page, app_url, BROWSER_ADMIN)
    upload(page, xray)
    wait_for_result(page, xray.name)
    feedback = page.locator(".st-key-feedback")
    feedback.get_by_text("Disagree").click()
    feedback.get_by_text("The class you read").wait_for()
    feedback.get_by_label("Note (optional)").fill("looks viral to me")
    feedback.get_by_role("button", name="Save feedback").click()
    feedback.get_by_text("Saved:").wait_for()

    with database.session() as session:
        notes = list(session.scalars(select(Feedback.note)))
    assert "looks viral to me" in notes

    page.get_by_role("link", name="Monitoring").click()
    matrix = page.locator(".st-key-agreement_matrix")
    matrix.locator(".js-plotly-plot").wait_for(state="visible")
    matrix.get_by_text("radiologist's class").wait_for(state="visible")


def test_a_dicoms_identifiers_never_reach_the_database_file(page, app_url, data_dir, cxr4_dir,
                                                           tmp_path):
    gray = np.asarray(Image.open(first_xray(cxr4_dir, "NORMAL")).convert("L"))
    dicom = tmp_path / "chest.dcm"
    dicom.write_bytes(make_dicom(gray, patient=FAKE_PATIENT))
    signed_in(page, app_url, READER)
    upload(page, dicom)
    wait_for_result(page, dicom.name)
    assert page.locator(RESULT).count() == 1

    # Every file of the data folder: the database, its WAL and shared-memory files.
    stored = b"".join(path.read_bytes() for path in data_dir.rglob("*") if path.is_file())
    assert audit.image_sha256(dicom.read_bytes()).encode() in stored
    uid = str(dcmread(dicom).SOPInstanceUID)
    leaked = [value for value in [*FAKE_PATIENT.values(), uid] if value.encode() in stored]
    assert not leaked


def test_an_admin_disabled_while_the_users_page_is_open_cannot_enable_itself(page, app_url,
                                                                            database):
    """IT disables admin2 from the command line while admin2 has Users open; admin2's click on
    Enable (its own account, chosen already) changes nothing, writes no row of it, and signs
    admin2 out."""
    signed_in(page, app_url, REVOKED)
    page.get_by_role("link", name="Users").click()
    page.get_by_role("button", name="Enable").wait_for()
    accounts.set_disabled(database, accounts.CLI_ACTOR, REVOKED[0], True)
    page.get_by_role("button", name="Enable").click()
    page.get_by_role("button", name="Sign in").wait_for()
    assert accounts.current_role(database, REVOKED[0]) is None
    with database.session() as session:
        done_by_revoked = list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.username == REVOKED[0], AuditEvent.action.startswith("admin:"))))
    assert done_by_revoked == []
