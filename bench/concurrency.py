"""Many radiologists at once: simultaneous browser sessions uploading X-rays, and the audit
trail afterwards.

    python bench/concurrency.py [--model RUN_DIR] [--data DIR] [--sessions 10] [--uploads 10]
        [--out FILE]

Starts `streamlit run app.py` on a fresh SQLite data folder holding one radiologist account per
session; then --sessions threads, each with its own Debian Chromium (Playwright), sign in
together and upload --uploads different real X-rays one after another, waiting up to 60 s for
each result. Prints the upload-to-result times (p50, p95, max, uploads with no result in 60 s),
then reads the audit trail: analysis rows per session (none lost, none duplicated), the hash
chain verified, and the server-side analysis time recorded in the rows. Last, the audit insert
on its own: 200 appends to a fresh SQLite database. Targets (issue 12): 10 sessions x 10
uploads with p95 upload-to-result <= 10 s, no upload lost, the chain intact; audit insert
median <= 5 ms. (The single-user upload-to-result median with auditing on is
bench/e2e_latency.py's.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from model.predictor import DEFAULT_RUN_DIR
from model.run_dir import MODEL_FILE
from testkit.browser_app import (
    BROWSER_ADMIN,
    CHROMIUM,
    CHROMIUM_ARGS,
    prepare_data_dir,
    sign_in,
    start_server,
    stop_server,
    upload,
    wait_for_result,
    wait_healthy,
)
from testkit.servers import free_port
from testkit.xray_files import distinct_xrays
from training.config import CXR4_DATA
from webapp import audit
from webapp.db import open_database
from webapp.tables import AuditEvent

RESULT_TIMEOUT_MS = 60_000
PAGE_TIMEOUT_MS = 180_000
INSERTS = 200


def readers(count: int) -> list[tuple[str, str]]:
    return [(f"reader{index:02d}", f"reader password {index:02d}") for index in range(count)]


def one_session(url: str, account: tuple[str, str], xrays: list[Path],
                start_together: threading.Barrier) -> list[float | None]:
    """Sign in, wait for the others, upload each X-ray and time its result (None: none in 60 s)."""
    seconds: list[float | None] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(url)
            sign_in(page, *account)
            page.get_by_test_id("stFileUploader").wait_for(state="visible")
            start_together.wait()
            for xray in xrays:
                start = time.perf_counter()
                upload(page, xray, RESULT_TIMEOUT_MS)
                try:
                    wait_for_result(page, xray.name, RESULT_TIMEOUT_MS)
                    seconds.append(time.perf_counter() - start)
                except PlaywrightTimeout:
                    seconds.append(None)
        finally:
            browser.close()
    return seconds


def _percentiles(values: list[float], scale: float = 1.0, digits: int = 3) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    array = np.asarray(values) * scale
    return {"p50": round(float(np.percentile(array, 50)), digits),
            "p95": round(float(np.percentile(array, 95)), digits),
            "max": round(float(array.max()), digits)}


def audit_figures(database_url: str, usernames: list[str], uploads: int) -> dict:
    """What the audit trail holds after the run: rows per session, the chain, server times."""
    database = open_database(database_url)
    try:
        with database.session() as session:
            rows = session.scalars(select(AuditEvent).where(
                AuditEvent.action.in_([audit.ANALYSIS, audit.REFUSAL]))).all()
        check = audit.verify_chain(database)
    finally:
        database.engine.dispose()
    counts = Counter(row.username for row in rows)
    return {
        "analysis_rows": len(rows),
        "lost_rows": sum(max(0, uploads - counts[name]) for name in usernames),
        "duplicated_rows": sum(max(0, counts[name] - uploads) for name in usernames),
        "chain_intact": check.intact,
        "chain_rows_checked": check.rows_checked,
        "server_analysis_ms": _percentiles([row.latency_ms for row in rows
                                            if row.latency_ms is not None], digits=1),
    }


def audit_insert_ms(folder: Path) -> dict:
    """The time one audit append takes on its own (SQLite, WAL), over INSERTS appends."""
    database = open_database(f"sqlite:///{folder / 'inserts.db'}")
    event = audit.Event("bench", "radiologist", audit.ANALYSIS, image_sha256="0" * 64,
                        image_bytes=1, model_version="bench", label="NORMAL",
                        probabilities={"NORMAL": 1.0}, latency_ms=1.0)
    seconds = []
    try:
        for _ in range(INSERTS):
            start = time.perf_counter()
            audit.record(database, event)
            seconds.append(time.perf_counter() - start)
    finally:
        database.engine.dispose()
    return _percentiles(seconds, scale=1000, digits=2)


def measure(run_dir: Path, xrays: list[Path], sessions: int, uploads: int,
            folder: Path) -> dict:
    accounts = readers(sessions)
    database_url = prepare_data_dir(folder / "data", (
        (*BROWSER_ADMIN, "admin"), *((name, password, "radiologist")
                                     for name, password in accounts)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(run_dir, port, folder / "streamlit.log", folder / "data")
    try:
        wait_healthy(url, server)
        start_together = threading.Barrier(sessions, timeout=PAGE_TIMEOUT_MS / 1000)
        with ThreadPoolExecutor(sessions) as pool:
            runs = list(pool.map(
                lambda index: one_session(url, accounts[index],
                                          xrays[index * uploads:(index + 1) * uploads],
                                          start_together), range(sessions)))
    finally:
        stop_server(server)
    times = [value for run in runs for value in run]
    shown = [value for value in times if value is not None]
    log = (folder / "streamlit.log").read_text(errors="replace")
    return {
        "model": str(run_dir),
        "sessions": sessions,
        "uploads_per_session": uploads,
        "upload_to_result_s": _percentiles(shown),
        "uploads_without_result_in_60_s": len(times) - len(shown),
        "server_tracebacks": log.count("Traceback"),
        "audit": audit_figures(database_url, [name for name, _ in accounts], uploads),
        "audit_insert_ms": audit_insert_ms(folder),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR, help="run directory")
    parser.add_argument("--data", type=Path, default=CXR4_DATA, help="cxr4 data folder")
    parser.add_argument("--sessions", type=int, default=10, help="simultaneous browsers")
    parser.add_argument("--uploads", type=int, default=10, help="different X-rays per session")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        parser.error(f"{CHROMIUM} is absent: apt-get install chromium")
    if not (args.model / MODEL_FILE).is_file():
        parser.error(f"no model at {args.model}")
    xrays = distinct_xrays(args.data, args.sessions * args.uploads, args.model)
    with tempfile.TemporaryDirectory() as scratch:
        results = measure(args.model, xrays, args.sessions, args.uploads, Path(scratch))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
