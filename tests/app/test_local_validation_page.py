"""Validate only on the Sites page (AppTest), on real films of a hospital the shipped model never
saw: the served model's figures on them, shown against what docs/GOING_LIVE.md asks for; an
admin accepts it as validated at the site, audited, and Diagnose then names the site."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from model.run_dir import DEFAULT_RUN_DIR, read_metadata
from records import actions, audit
from records.db import open_database
from records.settings import MODEL_DIR_ENV, SITES_DIR_ENV
from records.tables import AuditEvent
from testkit.apptest import open_page, upload
from testkit.site_factory import zip_of
from training.config import SHARED_DATA
from webapp.page_state import DIAGNOSE_RESULT

LUNGS = SHARED_DATA / "lungs" / "images"  # adult normal films (OpenIST), all NORMAL
FILMS = 150  # the normal films docs/GOING_LIVE.md asks for
pytestmark = [pytest.mark.usefixtures("app_database_url"),
              pytest.mark.skipif(not LUNGS.is_dir(), reason=f"no real films at {LUNGS}")]


def test_validate_only_on_real_films_then_accept_names_the_site_on_diagnose(
        app_database_url, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(DEFAULT_RUN_DIR))
    monkeypatch.setenv(SITES_DIR_ENV, str(tmp_path / "sites"))
    films = sorted(LUNGS.iterdir())[:FILMS]
    at = open_page("views/sites.py")
    assert any("has not been validated at this site" in item.value for item in at.warning)
    at.file_uploader(key="validation_zip").set_value(
        ("site.zip", zip_of({f"NORMAL/{path.name}": path.read_bytes() for path in films}),
         "application/zip"))
    at.run()
    at.button(key="validate_only").click()
    at.run(timeout=600)
    assert not at.error, [item.value for item in at.error]
    [table] = at.dataframe  # no switch yet: the figures are the page's one table
    rows = table.value
    by_figure = dict(zip(rows["Figure"], zip(rows["Films"], rows["Value"], strict=True),
                         strict=True))
    films_recall, recall = by_figure["Normal films called Normal"]
    films_covid, called_covid = by_figure["Normal films called COVID-19"]
    assert films_recall == films_covid == FILMS
    assert 0 < recall < 1 and 0 < called_covid <= 1 - recall + 1e-9  # some called COVID-19
    assert not any("Fewer films" in item.value for item in at.warning)  # enough normals

    at.text_input(key="accept_site_validate_only").input("St Mary")
    at.run()
    accept = at.button(key="accept_validate_only")
    assert accept.label == "Accept: validated at St-Mary" and not accept.disabled
    accept.click()
    at.run()
    version = read_metadata(DEFAULT_RUN_DIR).version
    assert any(f"{version} is validated at St-Mary" in item.value for item in at.success)

    database = open_database(app_database_url)
    try:
        with database.session() as session:
            [row] = session.scalars(select(AuditEvent).where(
                AuditEvent.action == actions.ACCEPT_VALIDATION))
        assert audit.verify_chain(database).intact
    finally:
        database.engine.dispose()
    detail = json.loads(row.detail)
    assert (row.username, row.model_version) == ("ada", version)
    assert detail["site"] == "St-Mary" and detail["films"] == {"NORMAL": FILMS}
    assert detail["figures"]["normal_recall"] == pytest.approx(recall)
    assert detail["source"] == "validate only"

    at.switch_page("views/diagnose.py")
    at.run()
    assert not any("not been validated" in str(item.value) for item in at.warning)
    upload(at, films[0].name, films[0].read_bytes(), "image/jpeg")
    assert at.session_state[DIAGNOSE_RESULT].analysis.prediction.validated_at_site == "St-Mary"
