"""The Sites page through app.py (AppTest): a real adaptation started from an uploaded .zip,
its before/after, Activate (Diagnose then analyses with it) and serving the shipped model again
from the kept models, each audited; an admin disabled while the page is open acts no more; and
what it says in model-server mode."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from model.run_dir import DEFAULT_RUN_DIR, read_metadata
from records import actions
from records.accounts import CLI_ACTOR, set_disabled
from records.db import open_database
from records.model_activations import SERVER_MODE
from records.settings import MODEL_DIR_ENV, MODEL_URL_ENV, SITES_DIR_ENV
from records.tables import AuditEvent
from testkit import stored_features
from testkit.apptest import ADMIN, RADIOLOGIST, open_page, synthetic_png, upload
from testkit.site_factory import banked_run as onboardable_run
from testkit.site_factory import site_zip, zip_of
from training.config import SHARED_DATA
from webapp.page_state import DIAGNOSE_RESULT
from webapp.site_shift import SERVER_MODE as SHIFT_SERVER_MODE

pytestmark = pytest.mark.usefixtures("app_database_url")
PAGE = "views/sites.py"
SHIFT_ZIP, SHIFT_RECENT = "A .zip of films", "The last analysed films"


@pytest.fixture(scope="module")
def banked_run(tmp_path_factory) -> Path:
    return onboardable_run(tmp_path_factory.mktemp("base"))


@pytest.fixture(autouse=True)
def served(banked_run, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(MODEL_DIR_ENV, str(banked_run))
    monkeypatch.setenv(SITES_DIR_ENV, str(tmp_path / "sites"))
    return banked_run


def button(at: AppTest, starts_with: str):
    return next(widget for widget in at.button if widget.label.startswith(starts_with))


def page_text(at: AppTest) -> str:
    return " ".join(item.value for item in [*at.markdown, *at.info, *at.error, *at.success,
                                            *at.warning, *at.caption])


def audit_rows(url: str, action: str) -> list[AuditEvent]:
    database = open_database(url)
    try:
        with database.session() as session:
            return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
    finally:
        database.engine.dispose()


def test_a_radiologist_cannot_open_the_sites_page():
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(PAGE, account=RADIOLOGIST)


def test_confirmed_films_are_unavailable_while_images_are_not_kept():
    at = open_page(PAGE)
    at.radio(key="site_source").set_value("Radiologist-confirmed films").run()
    assert "Keeping de-identified images is off" in page_text(at)
    assert button(at, "Start adaptation").disabled


def test_an_admin_onboards_a_site_activates_it_and_goes_back(app_database_url, banked_run):
    base_version = read_metadata(banked_run).version
    at = open_page(PAGE)
    assert base_version in page_text(at)
    at.text_input(key="site_name").input("St Mary")
    at.file_uploader(key="site_zip").set_value(("site.zip", site_zip(30), "application/zip"))
    button(at, "Start adaptation").click().run()
    assert "Started St-Mary: Normal 30" in page_text(at), page_text(at)
    deadline = time.monotonic() + 240
    while not any(widget.label.startswith("Activate") for widget in at.button):
        assert time.monotonic() < deadline and not at.exception, page_text(at)
        time.sleep(1)
        at.run()
    assert not at.error, [item.value for item in at.error]
    before_after = at.dataframe[0].value
    assert list(before_after["Held-out local films"])[0] == "Normal recall"
    assert len(at.get("plotly_chart")) == 2  # the confusion matrices, before and after

    button(at, "Activate").click().run()
    adapted = f"{base_version}+site-St-Mary"
    assert f"Now serving {adapted} (was {base_version})." in page_text(at)
    [row] = audit_rows(app_database_url, actions.ACTIVATE_MODEL)
    assert row.model_version == adapted
    assert json.loads(row.detail)["previous_version"] == base_version

    # Diagnose now analyses with the adapted model, without a restart.
    at.switch_page("views/diagnose.py").run()
    upload(at, "chest.png", synthetic_png(label=0))
    assert at.session_state[DIAGNOSE_RESULT].analysis.prediction.model_version == adapted
    [row] = audit_rows(app_database_url, actions.ANALYSIS)
    assert row.model_version == adapted

    at.switch_page(PAGE).run()
    kept = at.selectbox(key="kept_model")
    assert kept.options == [f"{base_version} ({banked_run.name})",
                            f"{adapted} (St-Mary-{adapted_stamp(app_database_url)})"]
    kept.set_value(str(banked_run)).run()
    button(at, "Serve this model").click().run()
    assert f"Now serving {base_version} (was {adapted})." in page_text(at)
    assert [row.model_version for row in audit_rows(app_database_url, actions.ACTIVATE_MODEL)
            ] == [adapted, base_version]

    # Monitoring marks both switches on its time charts.
    at.switch_page("views/monitoring.py").run()
    assert not at.exception, [item.value for item in at.exception]
    notes = [note["text"] for chart in at.get("plotly_chart")
             for note in json.loads(chart.proto.spec)["layout"].get("annotations", [])]
    assert notes.count(f"model {adapted}") == 3 and notes.count(f"model {base_version}") == 3


def adapted_stamp(url: str) -> str:
    [started] = audit_rows(url, actions.ADAPTATION_STARTED)
    return json.loads(started.detail)["job"].removesuffix("-St-Mary")


def test_an_admin_disabled_while_the_page_is_open_switches_nothing_and_is_signed_out(
        app_database_url, banked_run, tmp_path):
    adapted = tmp_path / "sites" / "st-mary-20261208-100000"
    shutil.copytree(banked_run, adapted)
    at = open_page(PAGE)
    at.selectbox(key="kept_model").set_value(str(adapted)).run()
    database = open_database(app_database_url)
    try:
        set_disabled(database, CLI_ACTOR, ADMIN[0], True)  # IT, from the command line
    finally:
        database.engine.dispose()
    button(at, "Serve this model").click().run()
    assert audit_rows(app_database_url, actions.ACTIVATE_MODEL) == []
    assert [widget.label for widget in at.button] == ["Sign in"], page_text(at)
    [signed_out] = audit_rows(app_database_url, actions.SIGN_OUT)
    assert json.loads(signed_out.detail)["reason"] == "account disabled"


def test_in_model_server_mode_the_page_says_activation_happens_on_the_server(monkeypatch):
    monkeypatch.setenv(MODEL_URL_ENV, "http://127.0.0.1:9")
    at = open_page(PAGE)
    assert SERVER_MODE in [item.value for item in at.info]


def test_a_model_that_cannot_load_shows_a_radiologist_no_server_path(monkeypatch, tmp_path):
    gone = tmp_path / "srv" / "sites" / "deleted-run"
    monkeypatch.setenv(MODEL_DIR_ENV, str(gone))
    for account, shows_path in ((RADIOLOGIST, False), (ADMIN, True)):
        at = open_page("views/diagnose.py", account=account)
        [error] = at.error
        assert error.value.startswith("The model could not be loaded")
        assert (str(gone) in error.value) == shows_path, error.value


def shift_check(at: AppTest, source: str, **choices) -> AppTest:
    at.radio(key="shift_source").set_value(source).run()
    for key, value in choices.items():
        at.get_by_key(key).set_value(value)
    return button(at, "Check these films").click().run()


def test_the_site_check_runs_on_the_last_analysed_films(app_database_url, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(DEFAULT_RUN_DIR))
    version = read_metadata(DEFAULT_RUN_DIR).version
    database = open_database(app_database_url)
    try:
        stored_features.store(database, version,
                              stored_features.shifted(stored_features.val_films()[:40]))
        at = shift_check(open_page(PAGE), SHIFT_RECENT, shift_count=60)
        assert f"Only 40 analysed films of {version}" in page_text(at), page_text(at)
        stored_features.store(database, version,
                              stored_features.shifted(stored_features.val_films()[40:70]))
    finally:
        database.engine.dispose()
    at = shift_check(at, SHIFT_RECENT, shift_count=60)
    score, threshold = (float(metric.value) for metric in at.metric)
    assert [metric.label for metric in at.metric] == ["Shift score", "Threshold"]
    assert score > threshold
    # The page also says the served model is not validated here (the Validate section).
    shifted = [item.value for item in at.warning if item.value.startswith("These 60 films")]
    assert shifted and "differ from the films the model was trained" in shifted[0], shifted


@pytest.mark.skipif(not (SHARED_DATA / "lungs").is_dir(), reason="the shared data is absent")
def test_the_site_check_reads_a_zip_of_an_unseen_hospitals_films(monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(DEFAULT_RUN_DIR))
    films = sorted((SHARED_DATA / "lungs" / "images").iterdir())[:60]
    archive = zip_of({f"site/{path.name}": path.read_bytes() for path in films})
    at = open_page(PAGE)
    at.radio(key="shift_source").set_value(SHIFT_ZIP).run()
    at.file_uploader(key="shift_zip").set_value(("site.zip", archive, "application/zip"))
    button(at, "Check these films").click().run(timeout=300)
    assert not at.error, [item.value for item in at.error]
    shifted = [item.value for item in at.warning
               if "films differ from the films the model was trained on" in item.value]
    assert len(shifted) == 1, [item.value for item in at.warning]


def test_the_site_check_says_why_a_zip_cannot_be_judged():
    at = shift_check(open_page(PAGE), SHIFT_ZIP)
    assert "Choose a .zip of the site's films first." in page_text(at)
    at.file_uploader(key="shift_zip").set_value(("site.zip", site_zip(3), "application/zip"))
    button(at, "Check these films").click().run()
    assert "holds too few films" in page_text(at)  # the factory run's bank is tiny


def test_in_model_server_mode_the_site_check_points_to_the_command(monkeypatch):
    monkeypatch.setenv(MODEL_URL_ENV, "http://127.0.0.1:9")
    at = open_page(PAGE)
    assert SHIFT_SERVER_MODE in [item.value for item in at.info]
    assert button(at, "Check these films").disabled
