"""The real-browser tests' shared set-up: Debian's Chromium driven by Playwright, and a skip
that says how to install it when it is absent."""

from __future__ import annotations

import pytest

from testkit.browser_app import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session", autouse=True)
def debian_chromium() -> None:
    """Skip every browser test, before any server starts, when Debian's Chromium is absent."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium) "
                    "to run the real-browser tests")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium for the browser tests, never a browser downloaded by Playwright."""
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}
