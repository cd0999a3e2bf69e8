"""The audit trail's key: a secret kept outside the database, so that someone who can write
to the database cannot rewrite the trail and recompute its hashes unnoticed.

From ``CXR_AUDIT_KEY`` when the deployment provides one (a secret store, an environment file
readable by the app's account only), else from ``audit.key`` in the data folder, made on
first start with permissions 0600. A key file readable by others is refused. Losing the key
means the rows it signed can no longer be verified: back it up apart from the database.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from records.settings import Settings

AUDIT_KEY_ENV = "CXR_AUDIT_KEY"
KEY_FILE = "audit.key"


class AuditKeyError(RuntimeError):
    """The audit key cannot be read safely; the message is for IT."""


def audit_key(settings: Settings) -> bytes:
    """The deployment's audit key (the environment's, else the data folder's file)."""
    return _key(os.environ.get(AUDIT_KEY_ENV, "").strip() or None, settings.data_dir / KEY_FILE)


@functools.lru_cache(maxsize=8)
def _key(from_environment: str | None, path: Path) -> bytes:
    if from_environment is not None:
        return from_environment.encode("utf-8")
    if not path.exists():
        _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuditKeyError(f"The audit key file {path} can be read by other accounts (mode "
                            f"{mode:o}); allow only the app's account: chmod 600 {path}.")
    return path.read_text(encoding="ascii").strip().encode("ascii")


def _create(path: Path) -> None:
    """A new random key, written so that only this account can ever read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(secrets.token_hex(32) + "\n")


def mac(key: bytes, text: str) -> str:
    """HMAC-SHA-256 of ``text`` under ``key``, as hex (the width of a SHA-256 row hash)."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def keyed_from_marker(key: bytes, seq: int) -> str:
    """The signed record of the first row the key signs: rows before it are pre-key."""
    return f"{seq}:{mac(key, f'keyed-from:{seq}')}"
