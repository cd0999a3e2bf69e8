"""Opaque keys for studies, series and images: what pages, logs, files and the CLI show.

A keyed hash (HMAC-SHA256) of the UID: stable for one secret, meaningless without it, so
neither a UID nor anything derived from a patient's identity is ever shown.
"""

from __future__ import annotations

import hashlib
import hmac

KINDS = {"study": "st", "series": "se", "image": "im"}


def opaque_key(kind: str, uid: str, secret: bytes) -> str:
    """e.g. 'st-3f9a0c1d2b4e5f60' for a StudyInstanceUID."""
    digest = hmac.new(secret, f"{kind}:{uid}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"{KINDS[kind]}-{digest}"
