"""What the Sites page does, as plain functions: gather a hospital's films (an uploaded .zip in
label folders, or radiologist-confirmed films the app kept), run ``python -m training.adapt``
on them in the background, read how it went, and show its before/after.

A job is a folder under ``Settings.sites_dir/jobs``: its films, ``job.json`` (what and where),
``adapt.log`` (the command's output) and ``exit_code`` (written by the job itself when it
ends). Everything the page shows is read back from that folder, so a rerun, a reload or a
restarted server finds the job where it was. The adapted run directory goes beside it, under
``sites_dir``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from model.labels import display_name
from model.run_dir import RunFileError
from model.run_metrics import read_metrics
from records.db import Database
from records.feedback import labelled_images
from records.image_store import image_path, keep_images
from records.settings import REPO_ROOT, Settings
from webapp.bounded_zip import ZipLimits, iter_members

JOBS_FOLDER = "jobs"
FILMS_FOLDER = "films"
JOB_FILE = "job.json"
LOG_FILE = "adapt.log"
EXIT_FILE = "exit_code"
MAX_NAME_CHARS = 40  # the version "<base>+site-<name>" fits the audit trail's 100 characters
LOG_TAIL_LINES = 12
# Runs the command, then writes its exit status beside the log: the job says how it ended
# even when the server that started it is gone.
JOB_SHELL = 'exit_file=$1; shift; "$@"; echo $? > "$exit_file.part"; mv "$exit_file.part" ' \
            '"$exit_file"'
NO_KEPT_IMAGES = ("Keeping de-identified images is off (Users page), so the app holds no "
                  "confirmed films to adapt on; upload a .zip instead, or turn keeping on and "
                  "let radiologists confirm analyses first.")


class SiteInputError(ValueError):
    """Films or a name the page cannot start an adaptation with; the message is for a person."""


def site_name(text: str) -> str:
    """The site's name as the run's version will carry it: letters, digits, - and _."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text.strip()).strip("-")[:MAX_NAME_CHARS]
    if not name:
        raise SiteInputError("Name the site (letters, digits, - and _), e.g. st-mary.")
    return name


def _label_folder(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+-]+", "_", text)


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
    archive (``NORMAL/a.png`` or ``site/NORMAL/a.png``), read within webapp.bounded_zip's
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
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", member.name)
        (target / f"{counts[label]:05d}_{safe_name}").write_bytes(content)
    return GatheredFilms(counts, skipped)


def confirmed_films_available(database: Database) -> str | None:
    """None when confirmed films can be used, else why not (a sentence for the page)."""
    return None if keep_images(database) else NO_KEPT_IMAGES


def films_from_feedback(database: Database, settings: Settings, folder: Path) -> GatheredFilms:
    """Copy the kept images whose radiologists' readings agree into ``folder/<CLASS>/``; images
    with conflicting readings, or not kept, are skipped and counted."""
    reason = confirmed_films_available(database)
    if reason:
        raise SiteInputError(reason)
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


@dataclass(frozen=True)
class Job:
    """One adaptation, as its folder says: what, from which model, into which run directory."""

    folder: Path
    site: str
    base_run_dir: Path
    out: Path
    started_at: datetime
    films: dict[str, int]

    @property
    def films_dir(self) -> Path:
        return self.folder / FILMS_FOLDER

    @property
    def log_file(self) -> Path:
        return self.folder / LOG_FILE


def new_job(settings: Settings, name: str, base_run_dir: Path,
            now: datetime | None = None) -> Job:
    """A fresh job folder (films still to be gathered) and the run directory it will write."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    folder = settings.sites_dir / JOBS_FOLDER / f"{stamp}-{name}"
    if folder.exists():
        raise SiteInputError(f"An adaptation of {name} started this second already.")
    (folder / FILMS_FOLDER).mkdir(parents=True)
    return Job(folder, name, base_run_dir, settings.sites_dir / f"{name}-{stamp}", now, {})


def _write_job(job: Job) -> None:
    (job.folder / JOB_FILE).write_text(json.dumps({
        "site": job.site, "base_run_dir": str(job.base_run_dir), "out": str(job.out),
        "started_at": job.started_at.isoformat(timespec="seconds"), "films": job.films}))


def read_job(folder: Path) -> Job:
    saved = json.loads((folder / JOB_FILE).read_text())
    return Job(folder, saved["site"], Path(saved["base_run_dir"]), Path(saved["out"]),
               datetime.fromisoformat(saved["started_at"]), saved["films"])


def adapt_command(job: Job) -> list[str]:
    return [sys.executable, "-m", "training.adapt", "--model", str(job.base_run_dir),
            "--site", str(job.films_dir), "--out", str(job.out), "--name", job.site]


def start(job: Job, films: GatheredFilms) -> Job:
    """Record the job and start training.adapt on its films in the background; it keeps
    running across page reruns, and writes its log and exit status into the job's folder."""
    if not films.total:
        raise SiteInputError("No films to adapt on: " + ("; ".join(films.skipped[:5])
                                                        or "the source holds none."))
    job = Job(job.folder, job.site, job.base_run_dir, job.out, job.started_at, films.counts)
    _write_job(job)
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with job.log_file.open("wb") as log:
        process = subprocess.Popen(["sh", "-c", JOB_SHELL, "sh", str(job.folder / EXIT_FILE),
                                    *adapt_command(job)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   env=environment, start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()  # reaps it when it ends
    return job


def start_from(settings: Settings, name: str, base_run_dir: Path,
               gather: Callable[[Path], GatheredFilms]) -> tuple[Job, GatheredFilms]:
    """A new job for site ``name``: ``gather`` writes its films into the folder given, then
    the adaptation starts; SiteInputError (and nothing left behind) when it cannot, or while
    another adaptation runs."""
    running = running_job(settings)
    if running is not None:
        raise SiteInputError(f"The adaptation of {running.site} is still running; one at a "
                             "time.")
    job = new_job(settings, site_name(name), base_run_dir)
    try:
        films = gather(job.films_dir)
        return start(job, films), films
    except BaseException:
        shutil.rmtree(job.folder, ignore_errors=True)
        raise


RUNNING, DONE, FAILED = "running", "done", "failed"


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands: running (with its log's last lines), done, or failed (why)."""

    job: Job
    state: str
    seconds: float
    message: str
    log_tail: list[str]


def refusal(log_text: str) -> str:
    """training.adapt's own message (argparse's "error: ..." and what follows), else the
    log's last lines."""
    match = re.search(r"^[\w.]+: error: (.*)", log_text, flags=re.MULTILINE | re.DOTALL)
    if match:
        return match.group(1).strip()
    lines = [line for line in log_text.splitlines() if line.strip()]
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "It stopped without a message."


def status(job: Job, now: float | None = None) -> JobStatus:
    """The job's state as its folder tells it."""
    log_text = job.log_file.read_text(errors="replace") if job.log_file.is_file() else ""
    tail = [line for line in log_text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    exit_file = job.folder / EXIT_FILE
    ended = exit_file.is_file()
    finished_at = exit_file.stat().st_mtime if ended else (now or time.time())
    seconds = max(0.0, finished_at - job.started_at.timestamp())
    if not ended:
        return JobStatus(job, RUNNING, seconds, "", tail)
    code = exit_file.read_text().strip()
    if code == "0" and job.out.is_dir():
        return JobStatus(job, DONE, seconds, f"Wrote {job.out}.", tail)
    return JobStatus(job, FAILED, seconds, refusal(log_text), tail)


def jobs(settings: Settings) -> list[Job]:
    """Every job the page started, newest first."""
    root = settings.sites_dir / JOBS_FOLDER
    folders = sorted((path for path in root.glob("*") if (path / JOB_FILE).is_file()),
                     reverse=True) if root.is_dir() else []
    return [read_job(folder) for folder in folders]


def running_job(settings: Settings) -> Job | None:
    """The job still running, if any: one at a time (the machine's cores are the app's too)."""
    return next((job for job in jobs(settings) if status(job).state == RUNNING), None)


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
