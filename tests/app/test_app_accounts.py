"""Sign-in, roles, the audit trail and feedback as the pages show them (AppTest, factory model).

AppTest runs a page file on its own after the first run, so a radiologist sent to an admin
page meets that page's own role check, as someone typing its URL would.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from records import actions, audit
from records.accounts import FIRST_ADMIN_EXISTS
from records.db import open_database
from records.image_store import keep_images
from records.settings import (
    DATA_DIR_ENV,
    DATABASE_URL_ENV,
    IDLE_MINUTES_ENV,
    MODEL_DIR_ENV,
    SQLITE_BUSY_ENV,
)
from records.tables import AuditEvent, Feedback
from testkit.apptest import (
    ADMIN,
    APP,
    RADIOLOGIST,
    open_page,
    sign_in,
    synthetic_png,
    text_input,
    upload,
)
from testkit.dicom_factory import FAKE_PATIENT, make_dicom
from testkit.synthetic_data import synthetic_xray
from webapp.page_state import DIAGNOSE_AUDIT_ID, DIAGNOSE_RESULT, SIGNED_IN
from webapp.session import PAUSED, SIGN_IN_UNAVAILABLE

pytestmark = pytest.mark.usefixtures("app_database_url")
ADMIN_PAGES = ("views/performance.py", "views/model_card.py", "views/monitoring.py",
               "views/users.py", "views/audit_trail.py")


@pytest.fixture(autouse=True)
def served_model(factory_run_dir, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(factory_run_dir))


@pytest.fixture
def database(app_database_url):
    opened = open_database(app_database_url)
    yield opened
    opened.engine.dispose()


def audit_rows(database, *actions: str) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action.in_(actions))
                                    .order_by(AuditEvent.seq)))


def button(at: AppTest, label: str):
    return next(widget for widget in at.button if widget.label == label)


def test_first_start_creates_the_admin_with_exactly_these_fields(tmp_path, monkeypatch):
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path / 'empty' / 'cxr.db'}")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert [(widget.label, widget.proto.type == widget.proto.PASSWORD)
            for widget in at.text_input] == [
        ("Username", False), ("Password", True), ("Repeat password", True)]
    assert [widget.label for widget in at.button] == ["Create admin account"]

    text_input(at, "Username").input("boss")
    text_input(at, "Password").input("first password")
    text_input(at, "Repeat password").input("other password")
    button(at, "Create admin account").click()
    at.run()
    assert "differ" in at.error[0].value

    text_input(at, "Repeat password").input("first password")
    button(at, "Create admin account").click()
    at.run()
    assert not at.exception
    assert at.session_state[SIGNED_IN].actor.role == "admin"


def test_a_wrong_password_is_refused_on_the_sign_in_page():
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert [widget.label for widget in at.button] == ["Sign in"]
    sign_in(at, ADMIN[0], "not the password")
    assert at.error[0].value == "Wrong username or password."
    assert "signed_in" not in at.session_state


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_a_radiologist_cannot_open_an_admin_page(page):
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(page, account=RADIOLOGIST)  # the navigation does not offer it


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_an_admin_opens_every_admin_page(page):
    at = open_page(page)
    assert not at.exception and "This page is for admins only." not in [
        error.value for error in at.error]


def test_an_upload_writes_one_analysis_row_and_a_bad_file_one_refusal(database):
    data = synthetic_png(label=1)
    at = upload(open_page(account=RADIOLOGIST), "patient-name.png", data)
    analysis = at.session_state[DIAGNOSE_RESULT].analysis
    at.slider(key="overlay_opacity").set_value(0.7)
    at.run()

    [row] = audit_rows(database, actions.ANALYSIS)
    assert (row.username, row.role, row.label) == ("rita", "radiologist",
                                                   analysis.predicted_class)
    assert row.image_sha256 == audit.image_sha256(data) and row.image_bytes == len(data)
    assert row.model_version == analysis.prediction.model_version and row.latency_ms > 0
    assert row.probabilities == audit.canonical_json(analysis.probabilities)
    assert "patient-name" not in audit.canonical_content(row)

    upload(at, "Zindabeth-notes.png", b"not an image")
    [refusal] = audit_rows(database, actions.REFUSAL)
    assert "Zindabeth-notes.png" in at.error[0].value
    assert refusal.refusal_reason == at.error[0].value.replace("Zindabeth-notes.png", "the file")
    assert refusal.label is None
    assert audit.verify_chain(database).intact


def test_feedback_is_saved_with_the_analysis_and_shown_on_monitoring(database):
    at = upload(open_page(account=RADIOLOGIST), "chest.png", synthetic_png(label=2))
    at.radio(key=f"verdict_{at.session_state['diagnose_audit_id']}").set_value("Disagree")
    at.run()
    audit_id = at.session_state[DIAGNOSE_AUDIT_ID]
    at.selectbox(key=f"read_class_{audit_id}").set_value("COVID19")
    at.text_area(key=f"note_{audit_id}").input("consolidation left base")
    at.button(key="save_feedback").click()
    at.run()
    assert not at.exception and not at.error

    with database.session() as session:
        stored = session.scalar(select(Feedback))
    assert (stored.analysis_id, stored.read_class, stored.agrees) == (audit_id, "COVID19", False)
    assert stored.note == "consolidation left base"

    monitoring = open_page("views/monitoring.py")
    matrix = monitoring.get_by_key("agreement_matrix")
    assert sum(map(sum, json.loads(matrix.proto.spec)["data"][0]["z"])) == 1
    metrics = {metric.label: metric.value for metric in monitoring.metric}
    assert metrics["Analyses"] == "1" and metrics["Refusal rate"] == "0.0%"
    for key in ("daily_volume", "latency", "class_mix"):
        assert json.loads(monitoring.get_by_key(key).proto.spec)["data"]
    drift_test = " ".join(caption.value for caption in monitoring.caption)
    assert "total-variation distance" in drift_test and "warning above 0.20" in drift_test


def test_analyses_pause_while_the_audit_trail_cannot_be_written(database, app_database_url,
                                                                 monkeypatch):
    monkeypatch.setenv(SQLITE_BUSY_ENV, "0.2")
    at = open_page(account=RADIOLOGIST)
    blocker = sqlite3.connect(app_database_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        upload(at, "chest.png", synthetic_png(label=0))
        assert [error.value for error in at.error] == [PAUSED]
        with pytest.raises(KeyError):
            at.get_by_key("result")
    finally:
        blocker.rollback()
        blocker.close()

    at.run()  # the upload is still there: the next click analyses it
    assert at.get_by_key("result") is not None
    assert len(audit_rows(database, actions.ANALYSIS)) == 1


def test_an_admin_adds_and_disables_an_account_on_the_users_page(database):
    at = open_page("views/users.py")
    at.text_input(key="new_username").input("newbie")
    at.text_input(key="new_password").input("newbie password")
    at.selectbox(key="new_role").set_value("radiologist")
    at.button(key="add_account").click()
    at.run()
    assert at.success[0].value == "Added radiologist newbie."
    assert "newbie" in list(at.dataframe[0].value["Username"])

    at.selectbox(key="chosen_account").set_value("newbie")
    at.button(key="disable_account").click()
    at.run()
    assert at.success[0].value == "Disabled newbie."
    assert [row.action for row in audit_rows(database, actions.ADD_ACCOUNT,
                                             actions.DISABLE_ACCOUNT)][-2:] == [
        actions.ADD_ACCOUNT, actions.DISABLE_ACCOUNT]


def test_kept_images_are_pixels_only_pngs_named_by_hash(database, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "kept"))
    admin = open_page("views/users.py")
    admin.toggle(key="keep_images").set_value(True)
    admin.run()
    assert keep_images(database)

    data = make_dicom(synthetic_xray(1, np.random.default_rng(0), (180, 150)),
                      patient=FAKE_PATIENT)
    upload(open_page(account=RADIOLOGIST), "scan.dcm", data, "application/dicom")
    [kept] = (tmp_path / "kept" / "images").iterdir()
    assert kept.name == f"{audit.image_sha256(data)}.png"
    image = Image.open(kept)
    assert image.mode == "L" and not image.info
    assert not [value for value in FAKE_PATIENT.values() if value.encode() in kept.read_bytes()]


def test_the_audit_trail_page_verifies_the_chain(database):
    at = open_page("views/audit_trail.py")
    at.button(key="verify").click()
    at.run()
    assert at.success[0].value.startswith("The audit trail is intact:")
    assert audit_rows(database, actions.VERIFY_AUDIT)


def test_signing_out_is_audited_and_forgets_the_session(database):
    at = open_page()  # app.py draws the sidebar's Sign out button on every page
    at.sidebar.button(key="sign_out").click()
    at.run()
    assert "signed_in" not in at.session_state
    [row] = audit_rows(database, actions.SIGN_OUT)
    assert (row.username, row.detail) == (ADMIN[0], '{"reason":"signed out"}')


def test_an_idle_session_must_sign_in_again(database, monkeypatch):
    at = open_page(account=RADIOLOGIST)
    monkeypatch.setenv(IDLE_MINUTES_ENV, "0")  # any time without a click is too long now
    at.run()
    assert [widget.label for widget in at.button] == ["Sign in"]  # the sign-in page, alone
    assert "signed out after a while without activity" in at.info[0].value
    assert not at.file_uploader
    [row] = audit_rows(database, actions.SIGN_OUT)
    assert row.detail == '{"reason":"idle timeout"}'


def test_viewing_another_class_heatmap_is_audited(database):
    at = upload(open_page(account=RADIOLOGIST), "chest.png", synthetic_png(label=0))
    predicted = at.session_state[DIAGNOSE_RESULT].analysis.predicted_class
    other = next(name for name in ("NORMAL", "COVID19") if name != predicted)
    at.selectbox(key="explained_class").set_value(other)
    at.run()
    [row] = audit_rows(database, actions.HEATMAP_VIEWED)
    assert json.loads(row.detail) == {"analysis_id": at.session_state[DIAGNOSE_AUDIT_ID],
                                      "class_name": other}


def test_the_first_admin_page_opened_after_an_admin_exists_shows_no_form():
    at = AppTest.from_file(str(APP.parent / "views" / "first_admin.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert [info.value for info in at.info] == [FIRST_ADMIN_EXISTS]
    assert len(at.text_input) == 0 and len(at.button) == 0


def test_sign_in_on_a_database_fault_says_so_not_that_analyses_are_paused(app_database_url,
                                                                          monkeypatch):
    monkeypatch.setenv(SQLITE_BUSY_ENV, "0.2")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    blocker = sqlite3.connect(app_database_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        sign_in(at, *RADIOLOGIST)
        assert [error.value for error in at.error] == [SIGN_IN_UNAVAILABLE]
    finally:
        blocker.rollback()
        blocker.close()
