"""Many radiologists at once: simultaneous browser sessions uploading X-rays, with auditing on.

    python -m bench.concurrency [--model RUN_DIR] [--data DIR] [--sessions 10] [--uploads 10]
        [--out FILE]

Starts `streamlit run app.py` with a fresh SQLite data folder, one radiologist account per
session, and drives --sessions browser sessions (contexts of one Debian Chromium, so they
share no cookies) that each sign in and upload --uploads different real X-rays one after
another, all sessions at the same time. Prints the p50/p95 upload-to-result time, the uploads
with no result within 60 s, the audit rows lost or duplicated (each upload must leave exactly
one analysis row), whether the hash chain verifies, the server-side analysis time from the
audit rows, and the median time of one audit insert (measured apart, on its own database).
Targets (issue 12): p95 <= 10 s, no upload lost, chain intact, audit insert median <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from playwright.async_api import async_playwright
from sqlalchemy import select

from model.labels import NORMAL
from model.predictor import DEFAULT_RUN_DIR
from model.run_dir import MODEL_FILE
from records import actions, audit
from records.db import open_database
from records.settings import DATABASE_FILE
from records.tables import AuditEvent
from testkit.browser_app import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OVERLAY_IMAGE,
    RESULT,
    RESULT_SHOWN_JS,
    distinct_xrays,
    prepare_data_dir,
    running_app,
)
from training.config import CXR4_DATA

RESULT_TIMEOUT_MS = 60_000
PASSWORD = "bench reader password"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def one_session(browser, url: str, username: str, xrays: list[Path]) -> list[float | None]:
    """Sign in, then upload each X-ray and wait for its result; None for one that never came."""
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(120_000)
    await page.goto(url)
    await page.get_by_label("Username", exact=True).fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    uploader = page.get_by_test_id("stFileUploader").locator("input[type=file]")
    await uploader.wait_for(state="attached")
    seconds: list[float | None] = []
    for xray in xrays:
        start = time.perf_counter()
        await uploader.set_input_files(str(xray))
        try:
            await page.wait_for_function(RESULT_SHOWN_JS, arg=[RESULT, OVERLAY_IMAGE, xray.name],
                                         polling="raf", timeout=RESULT_TIMEOUT_MS)
            seconds.append(time.perf_counter() - start)
        except TimeoutError:
            seconds.append(None)
    await context.close()
    return seconds


async def drive(url: str, plan: dict[str, list[Path]]) -> dict[str, list[float | None]]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_ARGS)
        try:
            timings = await asyncio.gather(*(one_session(browser, url, username, xrays)
                                             for username, xrays in plan.items()))
        finally:
            await browser.close()
    return dict(zip(plan, timings, strict=True))


def audit_figures(data_dir: Path, plan: dict[str, list[Path]]) -> dict:
    """Lost and duplicated analysis rows (one expected per upload), the chain, server times."""
    database = open_database(f"sqlite:///{data_dir / DATABASE_FILE}")
    try:
        with database.session() as session:
            rows = session.execute(select(AuditEvent.username, AuditEvent.image_sha256,
                                          AuditEvent.latency_ms)
                                   .where(AuditEvent.action == actions.ANALYSIS)).all()
        chain = audit.verify_chain(database)
    finally:
        database.engine.dispose()
    written = Counter((username, sha256) for username, sha256, _ in rows)
    expected = Counter((username, audit.image_sha256(path.read_bytes()))
                       for username, xrays in plan.items() for path in xrays)
    latencies = [latency for _, _, latency in rows]
    return {
        "audit_rows_lost": sum((expected - written).values()),
        "audit_rows_duplicated": sum((written - expected).values()),
        "chain_intact": chain.intact,
        "chain_rows": chain.rows_checked,
        "server_analysis_median_ms": round(statistics.median(latencies), 1),
        "server_analysis_p95_ms": round(percentile(latencies, 0.95), 1),
    }


def audit_insert_ms(scratch: Path, inserts: int = 200) -> float:
    """Median time of one audit append (its own transaction) on a fresh SQLite database."""
    database = open_database(f"sqlite:///{scratch / 'insert-bench.db'}")
    event = audit.Event("bench", "radiologist", actions.ANALYSIS, image_sha256="0" * 64,
                        image_bytes=1, model_version="bench", label=NORMAL,
                        probabilities={NORMAL: 1.0}, latency_ms=1.0)
    seconds = []
    for _ in range(inserts):
        start = time.perf_counter()
        audit.record(database, event)
        seconds.append(time.perf_counter() - start)
    database.engine.dispose()
    return round(statistics.median(seconds) * 1000, 2)


def measure(run_dir: Path, xrays: list[Path], sessions: int, scratch: Path) -> dict:
    usernames = [f"reader{index:02d}" for index in range(1, sessions + 1)]
    per_session = len(xrays) // sessions
    plan = {username: xrays[index * per_session:(index + 1) * per_session]
            for index, username in enumerate(usernames)}
    data_dir = scratch / "data"
    prepare_data_dir(data_dir, tuple((username, PASSWORD, "radiologist")
                                     for username in usernames))
    with running_app(run_dir, data_dir, scratch / "streamlit.log") as url:
        timings = asyncio.run(drive(url, plan))
    done = [value for values in timings.values() for value in values if value is not None]
    return {
        "model": str(run_dir),
        "sessions": sessions,
        "uploads_per_session": per_session,
        "uploads_without_result_in_60_s": sum(value is None for values in timings.values()
                                              for value in values),
        "upload_to_result_p50_s": round(percentile(done, 0.5), 3) if done else None,
        "upload_to_result_p95_s": round(percentile(done, 0.95), 3) if done else None,
        **audit_figures(data_dir, plan),
        "audit_insert_median_ms": audit_insert_ms(scratch),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR, help="run directory")
    parser.add_argument("--data", type=Path, default=CXR4_DATA, help="cxr4 data folder")
    parser.add_argument("--sessions", type=int, default=10, help="simultaneous sessions")
    parser.add_argument("--uploads", type=int, default=10, help="different X-rays per session")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        parser.error(f"{CHROMIUM} is absent: apt-get install chromium")
    if not (args.model / MODEL_FILE).is_file():
        parser.error(f"no model at {args.model}")
    xrays = distinct_xrays(args.data, args.sessions * args.uploads, args.model)
    with tempfile.TemporaryDirectory() as scratch:
        results = measure(args.model, xrays, args.sessions, Path(scratch))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
