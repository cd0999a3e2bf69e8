"""The app's speed and memory as a radiologist meets them, in a real browser.

    python -m bench.e2e_latency [--model RUN_DIR] [--data DIR] [--uploads 50] [--out FILE]

Starts `streamlit run app.py` cold, opens it in Debian's Chromium (Playwright), and measures:
server cold start to the first usable page (uploader shown, model loaded and warmed), the
upload-to-result time (result container and overlay visible) for each of --uploads different
real X-rays uploaded one after another, and the server's resident memory after the warm-up,
after 10 uploads and after all of them. Targets (issue 4): median upload-to-result <= 1.0 s,
cold start <= 15 s, memory <= 1.5 GB after 50 uploads with no growth per upload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from playwright.sync_api import sync_playwright

from model.predictor import DEFAULT_RUN_DIR
from model.run_dir import MODEL_FILE
from testkit.browser_app import (
    BROWSER_ADMIN,
    CHROMIUM,
    CHROMIUM_ARGS,
    distinct_xrays,
    prepare_data_dir,
    sign_in,
    start_server,
    stop_server,
    upload,
    wait_for_result,
    wait_healthy,
)
from testkit.servers import free_port
from training.config import CXR4_DATA

TIMEOUT_MS = 120_000


def resident_mb(server: psutil.Process) -> float:
    """Resident memory of the server and any children, in MB."""
    processes = [server, *server.children(recursive=True)]
    return sum(process.memory_info().rss for process in processes) / 2**20


def measure(run_dir: Path, xrays: list[Path], log_path: Path) -> dict:
    data_dir = log_path.parent / "data"
    prepare_data_dir(data_dir)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        server = start_server(run_dir, port, log_path, data_dir)
        try:
            wait_healthy(url, server)
            healthy_s = time.perf_counter() - started
            page.goto(url)
            sign_in(page, *BROWSER_ADMIN)
            page.get_by_test_id("stFileUploader").wait_for(state="visible")
            first_page_s = time.perf_counter() - started
            process = psutil.Process(server.pid)
            memory = {"after_warm_up_mb": resident_mb(process)}
            seconds = []
            for index, xray in enumerate(xrays, start=1):
                start = time.perf_counter()
                upload(page, xray, TIMEOUT_MS)
                wait_for_result(page, xray.name, TIMEOUT_MS)
                seconds.append(time.perf_counter() - start)
                if index == 10:
                    memory["after_10_uploads_mb"] = resident_mb(process)
            memory[f"after_{len(xrays)}_uploads_mb"] = resident_mb(process)
        finally:
            stop_server(server)
            browser.close()
    later = seconds[10:] if len(seconds) > 10 else seconds
    return {
        "model": str(run_dir),
        "uploads": len(xrays),
        "cold_start_to_health_s": round(healthy_s, 2),
        "cold_start_to_first_page_s": round(first_page_s, 2),
        "upload_to_result_median_s": round(statistics.median(seconds), 3),
        "upload_to_result_first_s": round(seconds[0], 3),
        "upload_to_result_p90_s": round(sorted(seconds)[int(0.9 * (len(seconds) - 1))], 3),
        "upload_to_result_max_s": round(max(seconds), 3),
        "upload_to_result_median_after_10_s": round(statistics.median(later), 3),
        "memory": {key: round(value, 1) for key, value in memory.items()},
        "memory_growth_per_upload_mb": round(
            (memory[f"after_{len(xrays)}_uploads_mb"] - memory.get("after_10_uploads_mb",
                                                                   memory["after_warm_up_mb"]))
            / max(1, len(xrays) - 10), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR, help="run directory")
    parser.add_argument("--data", type=Path, default=CXR4_DATA, help="cxr4 data folder")
    parser.add_argument("--uploads", type=int, default=50, help="different X-rays (>= 10)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.uploads < 10:
        parser.error("--uploads must be at least 10")
    if not CHROMIUM.is_file():
        parser.error(f"{CHROMIUM} is absent: apt-get install chromium")
    if not (args.model / MODEL_FILE).is_file():
        parser.error(f"no model at {args.model}")
    xrays = distinct_xrays(args.data, args.uploads, args.model)
    with tempfile.TemporaryDirectory() as scratch:
        results = measure(args.model, xrays, Path(scratch) / "streamlit.log")
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
