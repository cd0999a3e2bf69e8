"""The Sites page's logic: films gathered from a .zip or from confirmed feedback, a real
training.adapt job in the background (one at a time, audited, read back from its status file),
and model switches, each an audit row inside the keyed chain (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, select

from model import job_status
from model.bounded_zip import ZipLimits
from model.run_dir import MAX_VERSION_CHARS, read_metadata, write_metadata
from model.site_names import MAX_SITE_NAME_CHARS, SiteNameError, adapted_version, site_name
from pipeline import adapt_jobs as jobs
from records import actions, audit
from records.accounts import CLI_ACTOR, Actor, NotAnAdmin, add_account, set_disabled
from records.feedback import save_reading
from records.image_store import set_keep_images, store_image
from records.model_activations import (
    SERVER_MODE,
    ActivationError,
    Served,
    activate,
    active_run_dir,
    serving,
    switches,
)
from records.settings import Settings
from records.tables import AuditEvent
from testkit.apptest import png_bytes
from testkit.forged_audit import forge_row
from testkit.model_factory import metadata
from testkit.site_factory import banked_run as onboardable_run
from testkit.site_factory import site_zip, zip_of
from testkit.synthetic_data import synthetic_xray
from webapp import local_validation as validating
from webapp import site_onboarding as sites
from webapp.audited_analysis import record_view
from webapp.charts import confusion_matrix_figure

ADMIN = Actor("ada", "admin")


@pytest.fixture
def admin(database) -> Actor:
    """An admin account that is one now: every admin action checks that inside itself."""
    add_account(database, CLI_ACTOR, ADMIN.username, "ada's password", "admin")
    return ADMIN


def run_with_version(folder: Path, version: str) -> Path:
    """A run directory as far as a switch reads it: its metadata."""
    folder.mkdir(parents=True)
    write_metadata(folder, replace(metadata(), version=version))
    return folder


@pytest.fixture
def shipped(tmp_path) -> Served:
    return Served(run_with_version(tmp_path / "shipped", "base-v1"), "base-v1")


@pytest.fixture
def adapted(tmp_path) -> Served:
    return Served(run_with_version(tmp_path / "sites" / "st-mary", "base-v1+site-st-mary"),
                  "base-v1+site-st-mary")


def rows(database, action: str) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.seq)))


def test_a_switch_serves_any_kept_model_audited_with_both_versions(database, admin, shipped,
                                                                   adapted):
    assert active_run_dir(database, shipped.run_dir) == shipped.run_dir
    activate(database, admin, adapted.run_dir, shipped.run_dir)
    assert active_run_dir(database, shipped.run_dir) == adapted.run_dir
    [row] = rows(database, actions.ACTIVATE_MODEL)
    assert row.username == "ada" and row.model_version == adapted.version
    assert json.loads(row.detail)["previous_version"] == shipped.version

    back = activate(database, admin, shipped.run_dir, shipped.run_dir)
    assert back.served == shipped and back.previous == adapted
    assert active_run_dir(database, shipped.run_dir) == shipped.run_dir
    assert json.loads(rows(database, actions.ACTIVATE_MODEL)[1].detail)[
        "previous_version"] == adapted.version
    # Both switches kept, oldest first, for Monitoring's marks.
    assert [item.served.version for item in switches(database)] == [adapted.version,
                                                                     shipped.version]
    assert audit.verify_chain(database).intact


def test_a_switch_is_refused_in_server_mode_when_nothing_would_change_or_the_run_is_gone(
        database, admin, shipped, adapted, tmp_path):
    with pytest.raises(ActivationError, match="model server"):
        activate(database, admin, adapted.run_dir, shipped.run_dir,
                 model_url="http://models:8000")
    with pytest.raises(ActivationError, match="in use already"):
        activate(database, admin, shipped.run_dir, shipped.run_dir)
    with pytest.raises(ActivationError, match="not a readable run directory"):
        activate(database, admin, tmp_path / "sites" / "deleted-since", shipped.run_dir)
    set_disabled(database, CLI_ACTOR, "ada", True)
    with pytest.raises(NotAnAdmin):
        activate(database, admin, adapted.run_dir, shipped.run_dir)
    assert switches(database) == [] and rows(database, actions.ACTIVATE_MODEL) == []
    assert "python -m serving" in SERVER_MODE


def forge_switch(database, run_dir: Path) -> int:
    """A switch row appended without the audit key (testkit.forged_audit)."""
    return forge_row(database, actions.ACTIVATE_MODEL, "evil-v1",
                     {"run_dir": str(run_dir), "previous_run_dir": "/x", "previous_version": "x"})


def test_a_switch_written_without_the_audit_key_fails_verify_and_is_not_served(
        database, admin, shipped, adapted, tmp_path):
    with database.engine.connect() as connection:  # no table of switches beside the trail
        assert "model_activations" not in inspect(connection).get_table_names()
    forged = forge_switch(database, run_with_version(tmp_path / "evil", "evil-v1"))
    check = audit.verify_chain(database)
    assert not check.intact and check.first_broken_seq == forged
    now = serving(database, shipped.run_dir)
    assert now.run_dir == shipped.run_dir and now.unsigned == (forged,)
    assert switches(database) == []

    activate(database, admin, adapted.run_dir, shipped.run_dir)  # a real one after it
    forged_again = forge_switch(database, tmp_path / "evil")
    now = serving(database, shipped.run_dir)
    assert now.run_dir == adapted.run_dir and now.unsigned == (forged_again,)
    assert now.switch.served == adapted


def test_a_heatmap_view_names_the_version_of_its_analysis_not_the_served_one(
        database, admin, shipped, adapted):
    analysis_id = audit.record(database, audit.Event("rita", "radiologist", actions.ANALYSIS,
                                                     model_version="base-v1", label="NORMAL"))
    activate(database, admin, adapted.run_dir, shipped.run_dir)
    record_view(database, Actor("rita", "radiologist"), analysis_id, actions.HEATMAP_VIEWED,
                class_name="COVID19")
    [row] = rows(database, actions.HEATMAP_VIEWED)
    assert row.model_version == "base-v1"


def film() -> bytes:
    return png_bytes(synthetic_xray(0, np.random.default_rng(0), (40, 50)))


def test_a_zip_is_written_numbered_into_label_folders_and_loose_files_are_named(tmp_path):
    data = zip_of({"st-mary/NORMAL/a.png": film(), "st-mary/NORMAL/Jane Doe.png": film(),
                   "PNEUMONIA/c d.png": film(), "loose.png": film()})
    gathered = sites.films_from_zip("site.zip", data, ZipLimits(), tmp_path / "films")
    assert gathered.counts == {"NORMAL": 2, "PNEUMONIA": 1}
    # Numbered, never under their original names (which may carry a patient's).
    assert sorted(p.relative_to(tmp_path / "films").as_posix()
                  for p in (tmp_path / "films").rglob("*.png")) == [
        "NORMAL/00001.png", "NORMAL/00002.png", "PNEUMONIA/00001.png"]
    assert gathered.skipped == ["loose.png is not in a label folder (such as NORMAL/); skipped."]
    refused = sites.films_from_zip("bad.zip", b"not a zip", ZipLimits(), tmp_path / "none")
    assert refused.total == 0 and "not a readable .zip" in refused.skipped[0]


def test_zip_member_and_folder_names_of_any_length_are_written(tmp_path):
    long_name = "x" * 252 + ".png"
    data = zip_of({f"NORMAL/{long_name}": film(), f"{'L' * 300}/{long_name}": film(),
                   f"NORMAL/{'y' * 300}": film()})
    gathered = sites.films_from_zip("site.zip", data, ZipLimits(), tmp_path / "films")
    assert gathered.total == 3
    assert all(len(path.name) <= 16 for path in (tmp_path / "films").rglob("*")
               if path.is_file())


def test_site_names_and_adapted_versions_are_bounded_with_a_message():
    assert site_name("  St Mary's / North ") == "St-Mary-s-North"
    with pytest.raises(SiteNameError, match=f"at most {MAX_SITE_NAME_CHARS} characters"):
        site_name("x" * (MAX_SITE_NAME_CHARS + 1))
    with pytest.raises(SiteNameError, match="Name the site"):
        site_name(" ../ ")
    base = "cxr4+adult-efficientnet_lite0-20261202-1219"
    assert adapted_version(base, "st-mary") == f"{base}+site-st-mary"
    chained = f"{base}+site-{'a' * 20}"
    with pytest.raises(SiteNameError, match=f"at most {MAX_VERSION_CHARS} fit the audit trail: "
                                            "choose a site name of at most"):
        adapted_version(chained, "b" * 40)
    with pytest.raises(SiteNameError, match="adapted fewer times"):
        adapted_version("v" * 95, "b")


def test_confirmed_films_need_kept_images_and_agreeing_readings(database, admin, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="unused")
    assert "Keeping de-identified images is off" in sites.confirmed_films_available(database)
    with pytest.raises(sites.SiteInputError, match="off"):
        sites.films_from_feedback(database, settings, tmp_path / "films")
    set_keep_images(database, admin, True)
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


@pytest.fixture(scope="module")
def banked_run(tmp_path_factory) -> Served:
    run_dir = onboardable_run(tmp_path_factory.mktemp("base"))
    return Served(run_dir, read_metadata(run_dir).version)


def finished(job: jobs.Job, timeout: float = 240) -> jobs.JobStatus:
    deadline = time.monotonic() + timeout
    while (status := jobs.status(job)).state == job_status.RUNNING:
        assert time.monotonic() < deadline, "\n".join(status.log_tail)
        time.sleep(0.5)
    return status


def from_zip(count: int):
    return lambda folder: sites.films_from_zip("s.zip", site_zip(count), ZipLimits(), folder)


def settled(database, action: str, count: int, timeout: float = 30) -> list[AuditEvent]:
    """The rows of ``action`` once there are ``count`` (the runner writes its row after the
    status file)."""
    deadline = time.monotonic() + timeout
    while len(found := rows(database, action)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_background_adaptation_runs_audited_and_its_before_after_reads_back(
        database, admin, banked_run, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="unused")
    job, films = sites.start_from(database, settings, admin, "st mary", banked_run,
                                  from_zip(30))
    assert films.counts == {"NORMAL": 30}
    assert jobs.running_job(settings.sites_dir) == job  # TensorFlow alone takes seconds
    status = finished(job)
    assert status.state == job_status.DONE, status.message
    assert status.version == f"{banked_run.version}+site-st-mary"
    assert [listed.folder for listed in jobs.jobs(settings.sites_dir)] == [job.folder]
    assert job.out.parent == settings.sites_dir and jobs.read_job(job.folder) == job
    assert not job.films_dir.exists()  # keeping images is off: the site's films are gone
    [started] = rows(database, actions.ADAPTATION_STARTED)
    assert started.username == "ada" and started.model_version == banked_run.version
    assert json.loads(started.detail)["films"] == {"NORMAL": 30}
    [ended] = settled(database, actions.ADAPTATION_FINISHED, 1)
    assert ended.username == "ada" and ended.model_version == status.version
    assert json.loads(ended.detail)["state"] == "done"
    assert audit.verify_chain(database).intact
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
    validation = validating.from_adaptation(job, status.version)  # what an admin may accept
    assert validation.model == Served(job.out, status.version)
    assert validation.films == {"NORMAL": report["held_out"]}
    assert validation.figures == report["held_out_after"]
    assert validating.short_of_minimum(validation.films)  # a few held-out films: too few


def test_two_admins_starting_at_once_run_one_job_and_a_refusal_reads_its_status(
        database, admin, banked_run, tmp_path):
    """Two presses of Start a moment apart: one job, one audited refusal; adapt's own refusal
    (too few films) comes back from its status file; films are kept while keeping is on."""
    add_account(database, CLI_ACTOR, "bob", "bob's password", "admin")
    set_keep_images(database, admin, True)
    settings = Settings(data_dir=tmp_path, database_url="unused")
    barrier, outcomes = threading.Barrier(2), {}

    def press(actor: Actor) -> None:
        barrier.wait()
        try:
            outcomes[actor.username] = sites.start_from(database, settings, actor, "small",
                                                        banked_run, from_zip(12))[0]
        except sites.SiteInputError as error:
            outcomes[actor.username] = str(error)

    threads = [threading.Thread(target=press, args=(actor,))
               for actor in (admin, Actor("bob", "admin"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [job] = [outcome for outcome in outcomes.values() if isinstance(outcome, jobs.Job)]
    assert sorted(map(str, outcomes.values()))[0] == sites.ONE_AT_A_TIME
    assert len(jobs.jobs(settings.sites_dir)) == 1
    [refused] = rows(database, actions.ADAPTATION_REFUSED)
    assert json.loads(refused.detail)["reason"] == "another adaptation is running"
    status = finished(job)
    assert status.state == job_status.REFUSED and "at least 20" in status.message
    assert not job.out.exists() and len(list(job.films_dir.rglob("*.png"))) == 12
    [ended] = settled(database, actions.ADAPTATION_FINISHED, 1)
    assert json.loads(ended.detail)["state"] == "refused"
    assert len(rows(database, actions.ADAPTATION_STARTED)) == 1


def test_a_job_that_cannot_start_is_refused_audited_and_leaves_nothing(database, admin,
                                                                        banked_run, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="unused")
    with pytest.raises(sites.SiteInputError, match="No films"):
        sites.start_from(database, settings, admin, "empty", banked_run,
                         lambda folder: sites.films_from_zip(
                             "e.zip", zip_of({"loose.png": b"x"}), ZipLimits(), folder))
    long_base = Served(banked_run.run_dir, "v" * 90)
    with pytest.raises(sites.SiteInputError, match="fit the audit trail"):
        sites.start_from(database, settings, admin, "st-mary", long_base, from_zip(30))
    assert jobs.jobs(settings.sites_dir) == []
    assert [path.name for path in jobs.jobs_root(settings.sites_dir).iterdir()] == [
        jobs.LOCK_FILE]
    assert [json.loads(row.detail)["reason"] for row in
            rows(database, actions.ADAPTATION_REFUSED)] == ["no films", "site name"]
    set_disabled(database, CLI_ACTOR, "ada", True)
    with pytest.raises(NotAnAdmin):
        sites.start_from(database, settings, admin, "st-mary", banked_run, from_zip(30))
    assert len(rows(database, actions.ADAPTATION_REFUSED)) == 2
    assert rows(database, actions.ADAPTATION_STARTED) == []


def test_a_job_whose_runner_died_reads_as_stopped_not_running(tmp_path):
    job = jobs.new_job(tmp_path / "sites", "gone", tmp_path, "ada", keep_films=False)
    jobs.write_job(job)
    job_status.write_status(job.status_file, job_status.RUNNING, "adapting")
    status = jobs.status(job)
    assert status.state == job_status.FAILED and status.message == jobs.DIED
    assert jobs.running_job(tmp_path / "sites") is None
