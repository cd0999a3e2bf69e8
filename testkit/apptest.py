"""Driving the app through Streamlit's AppTest as a person would: the test accounts, a signed-in
page, an upload. Shared by the page tests (tests/app/: test_app_*.py, test_worklist_page.py)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from testkit import REPO_ROOT
from testkit.synthetic_data import synthetic_xray

if TYPE_CHECKING:  # conftest imports the accounts below; Streamlit loads only when a page runs
    from streamlit.testing.v1 import AppTest

APP = REPO_ROOT / "app.py"
ADMIN = ("ada", "admin password")
RADIOLOGIST = ("rita", "reader password")


def png_bytes(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_png(label: int, seed: int = 0, size: tuple[int, int] = (180, 150)) -> bytes:
    return png_bytes(synthetic_xray(label, np.random.default_rng(seed), size))


def text_input(at: AppTest, label: str):
    return next(widget for widget in at.text_input if widget.label == label)


def sign_in(at: AppTest, username: str, password: str) -> AppTest:
    """Through the real sign-in form, as a person would."""
    text_input(at, "Username").input(username)
    text_input(at, "Password").input(password)
    next(button for button in at.button if button.label == "Sign in").click()
    at.run()
    return at


def open_page(page: str = "views/diagnose.py", account: tuple[str, str] = ADMIN) -> AppTest:
    """Sign in, then open ``page`` through app.py's ``st.navigation``, as a browser does: a page
    the account's role is not given cannot be switched to (AppTest raises ValueError)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    sign_in(at, *account)
    at.switch_page(page)
    at.run()
    assert not at.exception, [item.value for item in at.exception]
    return at


def upload(at: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    at.file_uploader(key="upload").set_value((name, data, mime))
    at.run()
    assert not at.exception, [item.value for item in at.exception]
    return at


def result_text(at: AppTest) -> str:
    """Everything the result container says: metric labels and values, captions."""
    block = at.get_by_key("result")
    return " ".join(
        [f"{metric.label} {metric.value}" for metric in block.metric]
        + [caption.value for caption in block.caption]
    )
