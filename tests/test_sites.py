"""The Sites page's logic: films gathered from a .zip or from confirmed feedback, a real
training.adapt job in the background read back from its folder, and model activation and back,
each audited with both versions (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from records import actions, audit
from records.accounts import Actor
from records.feedback import save_reading
from records.image_store import set_keep_images, store_image
from records.model_activations import (
    SERVER_MODE,
    ActivationError,
    Served,
    activate,
    active_run_dir,
    restore_previous,
    switches,
)
from records.settings import Settings
from records.tables import AuditEvent
from testkit.apptest import png_bytes
from testkit.site_factory import banked_run as onboardable_run
from testkit.site_factory import site_zip, zip_of
from testkit.synthetic_data import synthetic_xray
from webapp import site_onboarding as sites
from webapp.audited_analysis import record_view
from webapp.bounded_zip import ZipLimits
from webapp.charts import confusion_matrix_figure

ADMIN = Actor("ada", "admin")
SHIPPED = Served(Path("/models/shipped"), "base-v1")
ADAPTED = Served(Path("/sites/st-mary"), "base-v1+site-st-mary")


def rows(database, action: str) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.seq)))


def test_activation_switches_the_served_model_and_back_audited_with_both_versions(database):
    assert active_run_dir(database, SHIPPED.run_dir) == SHIPPED.run_dir
    activate(database, ADMIN, ADAPTED, SHIPPED)
    assert active_run_dir(database, SHIPPED.run_dir) == ADAPTED.run_dir
    [row] = rows(database, actions.ACTIVATE_MODEL)
    assert row.username == "ada" and row.model_version == ADAPTED.version
    assert json.loads(row.detail)["previous_version"] == SHIPPED.version

    back = restore_previous(database, ADMIN)
    assert back.served == SHIPPED and back.previous == ADAPTED
    assert active_run_dir(database, Path("/elsewhere")) == SHIPPED.run_dir
    [row] = rows(database, actions.RESTORE_MODEL)
    assert row.model_version == SHIPPED.version
    assert json.loads(row.detail)["previous_version"] == ADAPTED.version
    # Both switches kept, oldest first, for Monitoring's marks.
    assert [item.served.version for item in switches(database)] == [ADAPTED.version,
                                                                     SHIPPED.version]
    assert audit.verify_chain(database).intact


def test_a_switch_is_refused_in_model_server_mode_and_when_nothing_would_change(database):
    with pytest.raises(ActivationError, match="model server"):
        activate(database, ADMIN, ADAPTED, SHIPPED, model_url="http://models:8000")
    with pytest.raises(ActivationError, match="in use already"):
        activate(database, ADMIN, SHIPPED, SHIPPED)
    with pytest.raises(ActivationError, match="no previous one"):
        restore_previous(database, ADMIN)
    assert switches(database) == [] and rows(database, actions.ACTIVATE_MODEL) == []
    assert "python -m serving" in SERVER_MODE


def test_a_heatmap_view_names_the_version_of_its_analysis_not_the_served_one(database):
    analysis_id = audit.record(database, audit.Event("rita", "radiologist", actions.ANALYSIS,
                                                     model_version="base-v1", label="NORMAL"))
    activate(database, ADMIN, ADAPTED, SHIPPED)
    record_view(database, Actor("rita", "radiologist"), analysis_id, actions.HEATMAP_VIEWED,
                class_name="COVID19")
    [row] = rows(database, actions.HEATMAP_VIEWED)
    assert row.model_version == "base-v1"


def test_a_zip_is_written_into_label_folders_and_loose_files_are_named(tmp_path):
    film = png_bytes(synthetic_xray(0, np.random.default_rng(0), (40, 50)))
    data = zip_of({"st-mary/NORMAL/a.png": film, "st-mary/NORMAL/b.png": film,
                   "PNEUMONIA/c d.png": film, "loose.png": film})
    gathered = sites.films_from_zip("site.zip", data, ZipLimits(), tmp_path / "films")
    assert gathered.counts == {"NORMAL": 2, "PNEUMONIA": 1}
    assert sorted(p.relative_to(tmp_path / "films").as_posix()
                  for p in (tmp_path / "films").rglob("*.png")) == [
        "NORMAL/00001_a.png", "NORMAL/00002_b.png", "PNEUMONIA/00001_c_d.png"]
    assert gathered.skipped == ["loose.png is not in a label folder (such as NORMAL/); skipped."]
    refused = sites.films_from_zip("bad.zip", b"not a zip", ZipLimits(), tmp_path / "none")
    assert refused.total == 0 and "not a readable .zip" in refused.skipped[0]


def test_site_names_are_safe_for_a_version_and_a_folder():
    assert sites.site_name("  St Mary's / North ") == "St-Mary-s-North"
    assert len(sites.site_name("x" * 200)) == sites.MAX_NAME_CHARS
    with pytest.raises(sites.SiteInputError, match="Name the site"):
        sites.site_name(" ../ ")


def test_confirmed_films_need_kept_images_and_agreeing_readings(database, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="unused")
    assert "Keeping de-identified images is off" in sites.confirmed_films_available(database)
    with pytest.raises(sites.SiteInputError, match="off"):
        sites.films_from_feedback(database, settings, tmp_path / "films")
    set_keep_images(database, ADMIN, True)
    rng = np.random.default_rng(1)
    for index, read in enumerate(("NORMAL", "NORMAL", "COVID19")):
        sha = f"{index:064d}"
        analysis_id = audit.record(database, audit.Event(
            "rita", "radiologist", actions.ANALYSIS, image_sha256=sha, model_version="v1",
            label="NORMAL"))
        if index < 2:  # the third analysed while keeping was off: no pixels
            store_image(settings.images_dir, sha, synthetic_xray(0, rng, (30, 30)))
        save_reading(database, settings, Actor("rita", "radiologist"), analysis_id,
                     read == "NORMAL", read)
    gathered = sites.films_from_feedback(database, settings, tmp_path / "films")
    assert gathered.counts == {"NORMAL": 2}
    assert gathered.skipped == ["1 confirmed films analysed while keeping images was off "
                                "(no pixels kept)"]
    assert len(list((tmp_path / "films" / "NORMAL").glob("*.png"))) == 2


def test_a_refusal_reads_as_adapts_own_message():
    log = ("INFO reading the site's films\nusage: adapt.py [-h] --model RUN_DIR\n"
           "adapt.py: error: 12 usable films in /x; at least 20 are needed\n")
    assert sites.refusal(log) == "12 usable films in /x; at least 20 are needed"
    assert sites.refusal("Traceback\nMemoryError\n") == "Traceback\nMemoryError"


@pytest.fixture(scope="module")
def banked_run(tmp_path_factory) -> Path:
    return onboardable_run(tmp_path_factory.mktemp("base"))


def finished(job: sites.Job, timeout: float = 240) -> sites.JobStatus:
    deadline = time.monotonic() + timeout
    while (status := sites.status(job)).state == sites.RUNNING:
        assert time.monotonic() < deadline, "\n".join(status.log_tail)
        time.sleep(0.5)
    return status


def test_a_background_adaptation_runs_and_its_before_after_reads_back(banked_run, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="unused")
    job, films = sites.start_from(settings, "st mary", banked_run, lambda folder:
                                  sites.films_from_zip("s.zip", site_zip(30), ZipLimits(),
                                                       folder))
    assert films.counts == {"NORMAL": 30}
    assert sites.running_job(settings) == job  # TensorFlow alone takes seconds to import
    with pytest.raises(sites.SiteInputError, match="st-mary is still running; one at a time"):
        sites.start_from(settings, "other", banked_run, lambda folder: None)
    status = finished(job)
    assert status.state == sites.DONE, status.message
    assert [listed.folder for listed in sites.jobs(settings)] == [job.folder]
    assert job.out.parent == settings.sites_dir and sites.read_job(job.folder) == job
    report = sites.site_report(job.out)
    assert report["name"] == "st-mary" and report["n"] == 30
    table = sites.before_after_rows(report)
    assert table[0]["Held-out local films"] == "Normal recall"
    assert table[0]["After"] == report["held_out_after"]["normal_recall"]
    classes = ["NORMAL", "BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA", "COVID19"]
    labels, counts = sites.held_out_confusion(report["held_out_after"], classes)
    assert labels == ["NORMAL"] and sum(counts[0]) == report["held_out"]
    figure = confusion_matrix_figure(classes, counts, rows=labels)
    assert list(figure.data[0].y) == ["Normal"] and len(figure.data[0].x) == 4


def test_a_refused_adaptation_shows_adapts_message_and_writes_no_run(banked_run, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="unused")
    job, _ = sites.start_from(settings, "small", banked_run, lambda folder:
                              sites.films_from_zip("s.zip", site_zip(12), ZipLimits(), folder))
    status = finished(job)
    assert status.state == sites.FAILED and "at least 20" in status.message
    assert not job.out.exists()


def test_a_job_with_no_films_is_refused_and_leaves_nothing(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="unused")
    with pytest.raises(sites.SiteInputError, match="No films"):
        sites.start_from(settings, "empty", tmp_path, lambda folder: sites.films_from_zip(
            "e.zip", zip_of({"loose.png": b"x"}), ZipLimits(), folder))
    assert sites.jobs(settings) == [] and not any((tmp_path / "sites" / "jobs").iterdir())
