"""The app as a user meets it: a real server process and a real browser page.

Shared by the end-to-end test and bench/e2e_latency.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from model.decode import decode_file
from model.errors import ImageError
from model.labels import CLASS_NAMES
from model.predictor import Predictor
from records.accounts import CLI_ACTOR, add_account
from records.audit_key import AUDIT_KEY_ENV, audit_key
from records.db import open_database
from records.settings import (
    DATA_DIR_ENV,
    DATABASE_FILE,
    DATABASE_URL_ENV,
    MODEL_DIR_ENV,
    load_settings,
)
from testkit import REPO_ROOT
from testkit.servers import free_port, stop_process  # noqa: F401  (free_port: re-exported)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
BROWSER_ADMIN = ("browser-admin", "browser admin password")
RESULT = ".st-key-result"
OVERLAY_IMAGE = ".st-key-overlay img"
# True once the result container names the file and the overlay image is drawn.
RESULT_SHOWN_JS = """([result, overlay, fileName]) => {
    const container = document.querySelector(result);
    const image = document.querySelector(overlay);
    return container !== null && container.innerText.includes(fileName)
        && image !== null && image.complete && image.naturalWidth > 0
        && image.getBoundingClientRect().width > 0;
}"""


def prepare_data_dir(data_dir: Path, accounts: tuple[tuple[str, str | None, str], ...] = (
        (*BROWSER_ADMIN, "admin"),)) -> str:
    """A data folder whose SQLite database holds these (username, password, role) accounts;
    returns its URL. With no accounts the app starts on its create-first-admin page."""
    url = f"sqlite:///{data_dir / DATABASE_FILE}"
    database = open_database(url)
    for username, password, role in accounts:
        add_account(database, CLI_ACTOR, username, password, role)
    database.engine.dispose()
    return url


def start_server(run_dir: Path, port: int, log_path: Path, data_dir: Path,
                 environment: dict[str, str] | None = None,
                 secrets_file: Path | None = None) -> subprocess.Popen:
    """`streamlit run app.py` on 127.0.0.1 serving run_dir, with its data (the database, kept
    images) in data_dir, extra ``environment`` (the PACS settings, say) and, optionally,
    Streamlit secrets (single sign-on's ``[auth]``); its output goes to log_path."""
    env = {name: value for name, value in os.environ.items() if name != DATABASE_URL_ENV}
    # The server signs the audit trail with this process's key, which also signed the
    # database's keyed-from marker (prepare_data_dir) and verifies what the server wrote.
    env.update({MODEL_DIR_ENV: str(run_dir), "TF_CPP_MIN_LOG_LEVEL": "2",
                AUDIT_KEY_ENV: audit_key(load_settings()).decode("utf-8"),
                DATA_DIR_ENV: str(data_dir), **(environment or {})})
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py",
             "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             *(["--secrets.files", str(secrets_file)] if secrets_file else [])],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll /_stcore/health until the server answers; fail early if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} was not healthy within {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    stop_process(server)


@contextmanager
def running_app(run_dir: Path, data_dir: Path, log_path: Path, port: int | None = None,
                secrets_file: Path | None = None) -> Iterator[str]:
    """A live app (its URL) until the block ends; a traceback in its log fails."""
    port = port or free_port()
    server = start_server(run_dir, port, log_path, data_dir, secrets_file=secrets_file)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        stop_server(server)
    log = log_path.read_text(errors="replace")
    if "Traceback" in log:
        raise AssertionError(f"the app server logged a traceback:\n{log[-3000:]}")


def sign_in(page, username: str, password: str) -> None:
    """Fill the sign-in form and press Sign in (no waiting for what comes next)."""
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def upload(page, path: Path, timeout_ms: float = 60_000) -> None:
    """Upload one file through the Diagnose page's uploader (no waiting for the result)."""
    uploader = page.get_by_test_id("stFileUploader").locator("input[type=file]")
    uploader.set_input_files(str(path), timeout=timeout_ms)


def wait_for_result(page, file_name: str, timeout_ms: float = 60_000) -> None:
    """Wait until the result container names this file and the overlay image is drawn.

    Checked on every animation frame, so a timing is not rounded up to Playwright's
    500 ms selector polling.
    """
    page.wait_for_function(
        RESULT_SHOWN_JS,
        arg=[RESULT, OVERLAY_IMAGE, file_name],
        polling="raf",
        timeout=timeout_ms,
    )


def distinct_xrays(data_dir: Path, count: int, run_dir: Path) -> list[Path]:
    """``count`` different validation X-rays that the served model accepts, the classes in turn.

    The few its out-of-distribution gate refuses (0.4 % of val) get a message, not a result,
    so they cannot time upload-to-result; they are left out and named.
    """
    predictor = Predictor.load(run_dir)
    per_class = [sorted((data_dir / "val" / name).glob("*.jpg")) for name in CLASS_NAMES]
    accepted = []
    for path in (path for group in zip(*per_class, strict=False) for path in group):
        try:
            predictor.predict(decode_file(path))  # the app's own decision, header included
        except ImageError as refusal:
            print(f"left out {path.name}: {refusal}")
            continue
        accepted.append(path)
        if len(accepted) == count:
            return accepted
    raise SystemExit(f"only {len(accepted)} accepted X-rays in {data_dir / 'val'}; need {count}")


def cli_record(run_dir: Path, path: Path) -> dict:
    """What `python -m model.predict` says of the file: the reference the page must match."""
    from testkit.predict_cli import predict_cli

    completed = predict_cli(path, "--model", run_dir)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.splitlines()[0])


def cli_prediction(run_dir: Path, path: Path) -> str:
    return cli_record(run_dir, path)["label"]


def first_xray(cxr4_dir: Path, class_name: str) -> Path:
    return sorted((cxr4_dir / "val" / class_name).glob("*.jpg"))[0]
