"""What the Sites page does, as plain functions: gather a hospital's films (an uploaded .zip in
label folders, or radiologist-confirmed films the app kept), start ``python -m training.adapt``
on them as a background job (pipeline.adapt_jobs: one at a time, read back from its folder),
and show its before/after. Starting, and each refusal to start, is audited here; the job's end
by its runner.

A site's films are written numbered (``NORMAL/00001.png``), never under their original names,
which may carry a patient's; they are deleted when the job ends unless keeping images is on.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from model.bounded_zip import ZipLimits, iter_members
from model.labels import display_name
from model.run_dir import RunFileError
from model.run_metrics import read_metrics
from model.site_names import SiteNameError, adapted_version, site_name
from pipeline import adapt_jobs as jobs
from records import actions
from records.accounts import Actor
from records.db import Database
from records.feedback import labelled_images
from records.image_store import image_path, keep_images
from records.model_activations import Served
from records.settings import Settings

MAX_LABEL_CHARS = 64  # a label folder's name: longer is no label anyone uses
MAX_SUFFIX_CHARS = 10
NO_KEPT_IMAGES = ("Keeping de-identified images is off (Users page), so the app holds no "
                  "confirmed films to adapt on; upload a .zip instead, or turn keeping on and "
                  "let radiologists confirm analyses first.")
ONE_AT_A_TIME = "Another adaptation is running (or being started); one at a time."


class SiteInputError(ValueError):
    """Films or a name the page cannot start an adaptation with; the message is for a person,
    ``reason`` (no file or patient names) for the audit trail."""

    def __init__(self, message: str, reason: str = "films") -> None:
        super().__init__(message)
        self.reason = reason


def _label_folder(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+-]+", "_", text)[:MAX_LABEL_CHARS]


def _film_name(index: int, member: PurePosixPath) -> str:
    """A film's file name: its number in its label folder and its (bounded) suffix only."""
    suffix = re.sub(r"[^A-Za-z0-9.]+", "", member.suffix)[:MAX_SUFFIX_CHARS]
    return f"{index:05d}{suffix}"


@dataclass(frozen=True)
class GatheredFilms:
    """Films written into a job's folder, per label folder, and what was skipped and why."""

    counts: dict[str, int]
    skipped: list[str]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def films_from_zip(name: str, data: bytes, limits: ZipLimits, folder: Path) -> GatheredFilms:
    """Write a .zip's images into ``folder/<LABEL>/`` by the folder that holds each in the
    archive (``NORMAL/a.png`` or ``site/NORMAL/a.png``), read within model.bounded_zip's
    limits; files outside a label folder are skipped, named. training.adapt judges the labels
    and the films."""
    counts: dict[str, int] = {}
    skipped: list[str] = []
    for item in iter_members(name, data, limits):
        if isinstance(item, str):
            skipped.append(item)
            continue
        label_path, content = item
        member = PurePosixPath(label_path.removeprefix(f"{name}/"))
        if len(member.parts) < 2:
            skipped.append(f"{member} is not in a label folder (such as NORMAL/); skipped.")
            continue
        label = _label_folder(member.parts[-2])
        target = folder / label
        target.mkdir(parents=True, exist_ok=True)
        counts[label] = counts.get(label, 0) + 1
        (target / _film_name(counts[label], member)).write_bytes(content)
    return GatheredFilms(counts, skipped)


def confirmed_films_available(database: Database) -> str | None:
    """None when confirmed films can be used, else why not (a sentence for the page)."""
    return None if keep_images(database) else NO_KEPT_IMAGES


def films_from_feedback(database: Database, settings: Settings, folder: Path) -> GatheredFilms:
    """Copy the kept images whose radiologists' readings agree into ``folder/<CLASS>/``; images
    with conflicting readings, or not kept, are skipped and counted."""
    reason = confirmed_films_available(database)
    if reason:
        raise SiteInputError(reason, "keeping images is off")
    counts: dict[str, int] = {}
    conflicting = missing = 0
    for sha256, read_class in labelled_images(database).items():
        if read_class is None:
            conflicting += 1
            continue
        source = image_path(settings.images_dir, sha256)
        if not source.is_file():
            missing += 1
            continue
        target = folder / _label_folder(read_class)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / source.name)
        counts[read_class] = counts.get(read_class, 0) + 1
    skipped = ([f"{conflicting} films whose radiologists read different classes"]
               if conflicting else []) + ([f"{missing} confirmed films analysed while keeping "
                                           "images was off (no pixels kept)"] if missing else [])
    return GatheredFilms(counts, skipped)


def start_from(database: Database, settings: Settings, actor: Actor, name: str, base: Served,
               gather: Callable[[Path], GatheredFilms]) -> tuple[jobs.Job, GatheredFilms]:
    """Adapt ``base`` to site ``name`` as a background job: ``gather`` writes its films into
    the folder given, then the job starts, audited. SiteInputError (audited as a refusal, and
    nothing left behind) when it cannot, or while another adaptation runs; NotAnAdmin (and no
    row at all) when ``actor`` is no longer an active admin; AuditUnavailable when the trail
    cannot be written (nothing starts)."""
    try:
        job, films = _start(database, settings, actor, name, base, gather)
    except SiteInputError as error:
        jobs.audit_admin_action(database, actor, actions.ADAPTATION_REFUSED,
                                site=name[:100], reason=error.reason)
        raise
    return job, films


def _start(database: Database, settings: Settings, actor: Actor, name: str, base: Served,
           gather: Callable[[Path], GatheredFilms]) -> tuple[jobs.Job, GatheredFilms]:
    try:
        site = site_name(name)
        version = adapted_version(base.version, site)
    except SiteNameError as error:
        raise SiteInputError(str(error), "site name") from None
    try:
        with jobs.one_at_a_time(settings.sites_dir) as lock:
            try:
                job = jobs.new_job(settings.sites_dir, site, base.run_dir, actor.username,
                                   keep_images(database))
            except FileExistsError:
                raise SiteInputError(f"An adaptation of {site} started this second already.",
                                     "started twice") from None
            try:
                films = gather(job.films_dir)
                if not films.total:
                    raise SiteInputError("No films to adapt on: " + (
                        "; ".join(films.skipped[:5]) or "the source holds none."), "no films")
                job = jobs.Job(job.folder, job.site, job.base_run_dir, job.out,
                               job.started_at, films.counts, job.started_by, job.keep_films)
                jobs.audit_admin_action(
                    database, actor, actions.ADAPTATION_STARTED, model_version=base.version,
                    job=job.folder.name, site=site, version=version, films=films.counts,
                    films_kept=job.keep_films)
                jobs.launch(job, lock, database.engine.url.render_as_string(hide_password=False))
            except BaseException:
                shutil.rmtree(job.folder, ignore_errors=True)
                raise
    except jobs.JobBusy:
        raise SiteInputError(ONE_AT_A_TIME, "another adaptation is running") from None
    return job, films


def site_report(run_dir: Path) -> dict | None:
    """metrics.json's ``site`` key of an adapted run (training.adapt), None without one."""
    try:
        return read_metrics(run_dir).site
    except RunFileError:
        return None


BEFORE_AFTER = (("Normal recall", "normal_recall"),
                ("Non-COVID films called COVID-19", "called_covid_among_non_covid"),
                ("Accuracy", "accuracy"))


def before_after_rows(report: dict) -> list[dict]:
    """The held-out local films' figures before and after, as table rows (None: undefined)."""
    before, after = report.get("held_out_before") or {}, report.get("held_out_after") or {}
    return [{"Held-out local films": title, "Before": before.get(key),
             "After": after.get(key)} for title, key in BEFORE_AFTER]


def held_out_confusion(figures: dict, classes: list[str]
                       ) -> tuple[list[str], list[list[int]]]:
    """(the films' labels, a matrix: one row per label, one column per class called) for
    webapp.charts.confusion_matrix_figure's ``rows`` and counts, from training.external's
    ``called`` counts."""
    labels = list(figures["called"])
    return labels, [[figures["called"][label].get(name, 0) for name in classes]
                    for label in labels]


def label_counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{display_name(label)} {count}" for label, count in sorted(counts.items()))
