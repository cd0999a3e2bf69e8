"""The Worklist in a real browser (Debian's Chromium) against a real Orthanc: query the PACS,
see the studies sorted, open one in the Diagnose view; no patient identifier or UID reaches
the page or the server's log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from testkit.browser_app import (
    BROWSER_ADMIN,
    RESULT,
    free_port,
    prepare_data_dir,
    sign_in,
    start_server,
    stop_server,
    wait_for_result,
    wait_healthy,
)
from testkit.pacs_studies import identifiers

TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def served(pacs_archive, factory_model_dir, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    run_dir = factory_model_dir
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    data_dir = tmp_path_factory.mktemp("data")
    prepare_data_dir(data_dir)
    server = start_server(run_dir, port, log_path, data_dir, pacs_archive.environment())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url, log_path
    finally:
        stop_server(server)


def test_a_pacs_worklist_opens_a_study_without_showing_identifiers(page, served, pacs_archive):
    url, log_path = served
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    sign_in(page, *BROWSER_ADMIN)
    page.get_by_role("link", name="Worklist").click()
    page.get_by_role("radio", name="PACS").click()
    page.get_by_role("button", name="Query the PACS").click()
    grid = page.get_by_test_id("stDataFrame")
    grid.wait_for(state="visible")
    page.get_by_text("select a row to open it").wait_for()

    page_text = page.content()
    secret = identifiers(pacs_archive.studies) | {study.study_uid for study in
                                                  pacs_archive.studies}
    assert not [value for value in secret if value in page_text]

    grid.scroll_into_view_if_needed()  # the first row may sit below the window's bottom edge
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 32)  # the first row's selection cell
    wait_for_result(page, "im-", timeout_ms=TIMEOUT_MS)
    expect(page.locator(RESULT)).to_contain_text("%", timeout=TIMEOUT_MS)  # metrics drawn
    assert "im-" in page.locator(RESULT).inner_text()
    page_text = page.content()
    assert not [value for value in secret if value in page_text]
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert not [value for value in secret if value in log]
