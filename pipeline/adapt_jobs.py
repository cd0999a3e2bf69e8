"""Adaptation jobs: ``python -m training.adapt`` run in the background, one at a time, each in a
folder that says how it went, so a page rerun, a reload or a restarted app finds it where it was.

A job is a folder under ``<sites_dir>/jobs``: its films, ``job.json`` (what, from which model,
into which run directory, started by whom), ``adapt.log`` (the command's output, for admins) and
``status.json`` (training.adapt's status file, model.job_status). The adapted run directory
goes beside the jobs, under ``sites_dir``.

One at a time, atomically: whoever starts a job first takes an exclusive ``flock`` on
``jobs/.running.lock`` (before gathering films), and the job's runner inherits it and holds it
until the job ends. The kernel drops it when the process ends, however it ends, so no stale
lock outlives a crash. When the job ends the runner completes its status, deletes its films
unless it was started while keeping images was on, and audits its end.

    python -m pipeline.adapt_jobs JOB_FOLDER --lock-fd N   (started by ``launch``)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from model.job_status import FAILED, RUNNING, AdaptStatus, read_status, write_status
from records import actions, audit
from records.accounts import Actor, check_admin
from records.db import Database, open_database
from records.roles import ADMIN
from records.settings import REPO_ROOT, load_settings

JOBS_FOLDER = "jobs"
FILMS_FOLDER = "films"
JOB_FILE = "job.json"
LOG_FILE = "adapt.log"
STATUS_FILE = "status.json"
LOCK_FILE = ".running.lock"
LOCK_TRIES, LOCK_PAUSE_SECONDS = 3, 0.05  # a reader's probe holds the lock for microseconds
LOG_TAIL_LINES = 12
STARTING = "starting"  # no status file yet: Python and TensorFlow are still loading
DIED = ("The adaptation stopped without finishing (its process ended: the server restarted, or "
        "it ran out of memory); start it again.")


class JobBusy(RuntimeError):
    """Another adaptation holds the one-at-a-time lock."""


@dataclass(frozen=True)
class Job:
    """One adaptation, as its folder says."""

    folder: Path
    site: str
    base_run_dir: Path
    out: Path
    started_at: datetime
    films: dict[str, int]
    started_by: str = ""
    keep_films: bool = False  # keeping images was on when it started: its films stay

    @property
    def films_dir(self) -> Path:
        return self.folder / FILMS_FOLDER

    @property
    def log_file(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def status_file(self) -> Path:
        return self.folder / STATUS_FILE


def jobs_root(sites_dir: Path) -> Path:
    return sites_dir / JOBS_FOLDER


@contextmanager
def one_at_a_time(sites_dir: Path) -> Iterator[int]:
    """Hold the one-at-a-time lock (its file descriptor, for ``launch`` to hand on); JobBusy
    while another job, or another admin starting one, holds it."""
    root = jobs_root(sites_dir)
    root.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(root / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        for attempt in range(LOCK_TRIES):
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == LOCK_TRIES - 1:
                    raise JobBusy from None
                time.sleep(LOCK_PAUSE_SECONDS)
        yield descriptor
    finally:
        os.close(descriptor)  # a launched runner keeps its own copy, and with it the lock


def lock_held(sites_dir: Path) -> bool:
    """Whether a job (or a start) holds the lock now: probed with a shared lock, let go at once."""
    path = jobs_root(sites_dir) / LOCK_FILE
    if not path.is_file():
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def new_job(sites_dir: Path, site: str, base_run_dir: Path, started_by: str,
            keep_films: bool, now: datetime | None = None) -> Job:
    """A fresh job folder (films still to be gathered) and the run directory it will write."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    folder = jobs_root(sites_dir) / f"{stamp}-{site}"
    (folder / FILMS_FOLDER).mkdir(parents=True)  # FileExistsError: this site, this second
    return Job(folder, site, base_run_dir, sites_dir / f"{site}-{stamp}", now, {}, started_by,
               keep_films)


def write_job(job: Job) -> None:
    (job.folder / JOB_FILE).write_text(json.dumps({
        "site": job.site, "base_run_dir": str(job.base_run_dir), "out": str(job.out),
        "started_at": job.started_at.isoformat(timespec="seconds"), "films": job.films,
        "started_by": job.started_by, "keep_films": job.keep_films}))


def read_job(folder: Path) -> Job:
    saved = json.loads((folder / JOB_FILE).read_text())
    return Job(folder, saved["site"], Path(saved["base_run_dir"]), Path(saved["out"]),
               datetime.fromisoformat(saved["started_at"]), saved["films"],
               saved.get("started_by", ""), saved.get("keep_films", False))


def adapt_command(job: Job) -> list[str]:
    return [sys.executable, "-m", "training.adapt", "--model", str(job.base_run_dir),
            "--site", str(job.films_dir), "--out", str(job.out), "--name", job.site,
            "--status", str(job.status_file)]


def audit_admin_action(database: Database, actor: Actor, action: str,
                       model_version: str | None = None, **detail) -> None:
    """One audited admin action about a job (started, refused), done only by an admin who is
    one now (NotAnAdmin, and no row, otherwise)."""
    with audit.audited(database) as session:
        check_admin(session, actor)
        audit.append(session, audit.Event(actor.username, actor.role, action,
                                          model_version=model_version, detail=detail))


def launch(job: Job, lock: int, database_url: str) -> None:
    """Record the job and start its runner in the background, handing it the lock; it keeps
    running across page reruns and writes everything into the job's folder."""
    write_job(job)
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
                   "CXR_DATABASE_URL": database_url}
    with job.log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.adapt_jobs", str(job.folder), "--lock-fd",
             str(lock)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=environment,
            pass_fds=(lock,), start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()  # reaps it when it ends


def run(folder: Path, lock: int) -> int:
    """The runner: training.adapt on the job's films (holding the lock too, should the runner
    be killed first), then its final status, its films deleted unless kept, its end audited."""
    job = read_job(folder)
    code = subprocess.call(adapt_command(job), cwd=REPO_ROOT, pass_fds=(lock,))
    final = read_status(job.status_file)
    if final is None or not final.final:
        write_status(job.status_file, FAILED, f"training.adapt stopped with exit code {code} "
                     "without finishing; its log says why.")
        final = read_status(job.status_file)
    if not job.keep_films:
        shutil.rmtree(job.films_dir, ignore_errors=True)
    settings = load_settings()
    database = open_database(settings.database_url, settings.sqlite_busy_seconds)
    try:
        audit.record(database, audit.Event(
            job.started_by, ADMIN, actions.ADAPTATION_FINISHED, model_version=final.version,
            detail={"job": job.folder.name, "site": job.site, "state": final.state,
                    "films_kept": job.keep_films,
                    "seconds": round((final.at - job.started_at).total_seconds())}))
    except audit.AuditUnavailable as error:
        print(f"The end of this job could not be audited: {error}", flush=True)
        return 1
    finally:
        database.engine.dispose()
    return 0


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands (RUNNING while it runs, else model.job_status's final state),
    for how long, what it said, and its log's last lines."""

    job: Job
    state: str
    seconds: float
    message: str
    log_tail: list[str]
    version: str | None = None


def status(job: Job, now: datetime | None = None) -> JobStatus:
    """The job's state as its folder tells it: running while its runner holds the lock (until
    its films are dealt with and its end audited), then training.adapt's final state; a job
    that ended without one died."""
    log_text = job.log_file.read_text(errors="replace") if job.log_file.is_file() else ""
    tail = [line for line in log_text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    saved: AdaptStatus | None = read_status(job.status_file)
    sites_dir = job.folder.parent.parent
    newest = max(path.name for path in jobs_root(sites_dir).iterdir() if path.is_dir())
    if job.folder.name == newest and lock_held(sites_dir):
        seconds = ((now or datetime.now(UTC)) - job.started_at).total_seconds()
        message = saved.message if saved is not None else STARTING
        return JobStatus(job, RUNNING, max(0.0, seconds), message, tail)
    if saved is not None and saved.final:
        seconds = (saved.at - job.started_at).total_seconds()
        return JobStatus(job, saved.state, max(0.0, seconds), saved.message, tail,
                         saved.version)
    return JobStatus(job, FAILED, 0.0, DIED, tail)


def _job_folders(sites_dir: Path) -> list[Path]:
    root = jobs_root(sites_dir)
    return sorted((path for path in root.glob("*") if (path / JOB_FILE).is_file()),
                  reverse=True) if root.is_dir() else []


def jobs(sites_dir: Path) -> list[Job]:
    """Every job, newest first."""
    return [read_job(folder) for folder in _job_folders(sites_dir)]


def running_job(sites_dir: Path) -> Job | None:
    """The job still running, if any: one at a time (the machine's cores are the app's too)."""
    listed = jobs(sites_dir)
    return listed[0] if listed and status(listed[0]).state == RUNNING else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.adapt_jobs",
                                     description="Run one adaptation job (started by the Sites "
                                     "page, holding its one-at-a-time lock).")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--lock-fd", type=int, required=True)
    arguments = parser.parse_args(argv)
    return run(arguments.folder, arguments.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
