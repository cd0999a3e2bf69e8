"""Every PACS setting in one place, read from the environment, with defaults that work locally.

| variable | meaning |
|---|---|
| CXR_PACS_URL | DICOMweb root, e.g. http://orthanc:8042/dicom-web (unset: no PACS) |
| CXR_PACS_USER, CXR_PACS_PASSWORD | HTTP basic login |
| CXR_PACS_TOKEN | bearer token (instead of basic login) |
| CXR_PACS_VIEWER_URL | study link for people, with {study_uid}, e.g. an OHIF viewer URL |
| CXR_PACS_KEY_SECRET | secret for the opaque study/series/image keys (unset: new each run) |
| CXR_PACS_TIMEOUT_S, CXR_PACS_RETRIES, CXR_PACS_BACKOFF_S | network patience |
| CXR_PACS_MAX_ANSWER_BYTES | the most one answer (an image) may hold; 60 MB |
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "CXR_PACS_"


@dataclass(frozen=True)
class PacsSettings:
    """How to reach the archive and how patient it is; ``repr`` never shows a secret."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    viewer_url: str | None = None
    key_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.5
    max_answer_bytes: int = 60_000_000  # one image at the 50 MB upload limit, with headers


def from_environment(environ: Mapping[str, str] = os.environ) -> PacsSettings | None:
    """The configured PACS, or None when CXR_PACS_URL is unset."""
    url = _text(environ, "URL")
    return None if url is None else settings_for(url, environ)


def settings_for(url: str, environ: Mapping[str, str] = os.environ) -> PacsSettings:
    """Settings for ``url`` (the CLI's --pacs), with the login and the rest from the environment."""
    secret = _text(environ, "KEY_SECRET")
    defaults = PacsSettings(url="")
    return PacsSettings(
        url=url.rstrip("/"),
        user=_text(environ, "USER"),
        password=_text(environ, "PASSWORD"),
        token=_text(environ, "TOKEN"),
        viewer_url=_text(environ, "VIEWER_URL"),
        key_secret=secret.encode() if secret else defaults.key_secret,
        timeout_s=float(_text(environ, "TIMEOUT_S") or defaults.timeout_s),
        retries=int(_text(environ, "RETRIES") or defaults.retries),
        backoff_s=float(_text(environ, "BACKOFF_S") or defaults.backoff_s),
        max_answer_bytes=int(_text(environ, "MAX_ANSWER_BYTES") or defaults.max_answer_bytes),
    )


def _text(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(PREFIX + name, "").strip()
    return value or None
