"""Supplied text stays text in a real browser: a hostile username and hostile file names on
every page that shows one give no link, no image and no request to the URL they name.

A tiny HTTP server stands in for the attacker's host and counts what reaches it.
"""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from testkit.browser_app import prepare_data_dir, running_app, sign_in
from testkit.servers import free_port
from testkit.synthetic_data import synthetic_xray

TIMEOUT_MS = 60_000
DIAGNOSE_UPLOADER = "Chest X-ray (PNG, JPEG or DICOM)"
WORKLIST_UPLOADER = "Chest X-rays, DICOM files or a .zip of them"


class Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        Recorder.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def attacker() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def hostile(host: str, tag: str) -> str:
    """Markdown for a link, an image (a tracking pixel) and an autolink, all to ``host``."""
    return f"[{tag}](http://{host}/{tag}) ![t](http://{host}/{tag}.png) www.{tag}.example"


@pytest.fixture(scope="module")
def served(attacker, factory_run_dir, tmp_path_factory) -> Iterator[tuple[str, str]]:
    admin = (hostile(attacker, "user")[:150], "hostile admin password", "admin")
    data_dir = tmp_path_factory.mktemp("data")
    prepare_data_dir(data_dir, (admin,))
    with running_app(factory_run_dir, data_dir, tmp_path_factory.mktemp("log") / "app.log"
                     ) as url:
        yield url, admin


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray(0, np.random.default_rng(3), (200, 180))).save(buffer, "PNG")
    return buffer.getvalue()


def assert_no_link_or_request(page, attacker: str, requested: list[str]) -> None:
    page.wait_for_timeout(500)  # an <img> would have been requested by now
    assert page.locator(f"a[href*='{attacker}']").count() == 0
    assert page.locator(f"img[src*='{attacker}']").count() == 0
    assert page.locator("a[href*='.example']").count() == 0
    assert [url for url in requested if attacker in url] == []
    assert Recorder.hits == []


def upload_named(page, uploader: str, name: str, data: bytes) -> None:
    """Upload through the uploader labelled ``uploader`` (not a stale one of the last page)."""
    widget = page.get_by_test_id("stFileUploader").filter(has_text=uploader)
    widget.wait_for()
    widget.locator("input[type=file]").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": data})


def shows(page, text: str) -> None:
    """Wait until the page shows ``text`` (invisible word joiners aside)."""
    page.wait_for_function(
        "text => document.body.innerText.replaceAll('\\u2060', '').includes(text)",
        arg=text, timeout=TIMEOUT_MS)


def test_hostile_names_show_as_text_on_every_page(page, served, attacker):
    url, (username, password, _role) = served
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    sign_in(page, username, password)
    page.get_by_test_id("stFileUploader").wait_for()
    shows(page, f"Signed in as {username}")  # the sidebar
    assert_no_link_or_request(page, attacker, requested)

    refused = hostile(attacker, "refused") + ".png"
    upload_named(page, DIAGNOSE_UPLOADER, refused, b"not an image at all")  # the refusal
    page.get_by_test_id("stAlertContentError").wait_for()
    shows(page, refused)
    assert_no_link_or_request(page, attacker, requested)

    analysed = hostile(attacker, "analysed") + ".png"
    upload_named(page, DIAGNOSE_UPLOADER, analysed, png_bytes())  # the result.s caption
    page.locator(".st-key-result").wait_for()
    shows(page, analysed)
    assert_no_link_or_request(page, attacker, requested)

    page.get_by_role("link", name="Worklist").click()  # Worklist: a zip's message
    broken = hostile(attacker, "zip") + ".zip"
    upload_named(page, WORKLIST_UPLOADER, broken, b"PK\x03\x04 not really a zip")
    page.get_by_role("button", name="Analyse the batch").click()
    shows(page, broken)
    assert_no_link_or_request(page, attacker, requested)

    page.get_by_role("link", name="Users").click()  # Users: the outcome of a change
    added = hostile(attacker, "added")[:150]
    page.get_by_label("New username").fill(added)
    page.locator("input[aria-label='Initial password']").fill("a long enough password")
    page.get_by_role("button", name="Add account").click()
    shows(page, f"Added radiologist {added}")
    assert_no_link_or_request(page, attacker, requested)
