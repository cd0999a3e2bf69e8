"""Single sign-on through st.login against a local OpenID Connect provider (oidc-provider-mock),
in Debian's Chromium: the provider vouches for an e-mail, the database gives it its role."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from records import actions
from records.db import open_database
from records.settings import DATABASE_FILE
from records.tables import AuditEvent
from testkit.browser_app import (
    BROWSER_ADMIN,
    prepare_data_dir,
    running_app,
)
from testkit.servers import free_port
from webapp.plain_text import WORD_JOINER

oidc_provider_mock = pytest.importorskip("oidc_provider_mock")

TIMEOUT_MS = 60_000
SSO_READER = "alice@hospital.example"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    prepare_data_dir(folder, ((*BROWSER_ADMIN, "admin"), (SSO_READER, None, "radiologist")))
    return folder


@pytest.fixture(scope="module")
def app_url(factory_run_dir, data_dir, provider, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    folder = tmp_path_factory.mktemp("sso")
    secrets_file = folder / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(16)}"\n'
        'client_id = "cxr-assistant"\n'
        'client_secret = "test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    with running_app(factory_run_dir, data_dir, folder / "app.log", port, secrets_file) as url:
        yield url


def sign_in_through_provider(page, app_url: str, identity: str) -> None:
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.locator("input[name=sub]").fill(identity)
    page.get_by_role("button", name="Authorize").click()


def test_a_vouched_identity_gets_its_role_from_the_database(page, app_url, data_dir):
    sign_in_through_provider(page, app_url, SSO_READER)
    page.get_by_test_id("stFileUploader").wait_for()
    # The name is shown as plain text: an invisible word joiner follows its "@" and "."
    # (webapp.plain_text), so no browser turns it into a mail link.
    shown = "".join(f"{character}{WORD_JOINER}" if character in "@." else character
                    for character in SSO_READER)
    page.get_by_text(f"Signed in as {shown} (radiologist)").wait_for()
    assert page.get_by_role("link", name="Users").count() == 0

    database = open_database(f"sqlite:///{data_dir / DATABASE_FILE}")
    try:
        with database.session() as session:
            row = session.scalar(select(AuditEvent).where(AuditEvent.action == actions.SIGN_IN,
                                                          AuditEvent.username == SSO_READER))
        assert row is not None and row.detail == '{"method":"single sign-on"}'
    finally:
        database.engine.dispose()


def test_an_identity_without_an_account_is_refused(page, app_url):
    sign_in_through_provider(page, app_url, "mallory@elsewhere.example")
    page.get_by_test_id("stAlertContentError").filter(
        has_text="has no active account here").wait_for()
    assert page.get_by_test_id("stFileUploader").count() == 0
