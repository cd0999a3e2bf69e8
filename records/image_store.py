"""De-identified copies of analysed images, kept only when an admin turns it on (off by default).

Only the decoded pixels are written, as a PNG with no text chunks: no DICOM header, no file
name, nothing but grey levels, named by the SHA-256 of the uploaded bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from records import actions, audit
from records.accounts import Actor, check_admin
from records.db import Database
from records.tables import AppSetting

KEEP_IMAGES_KEY = "keep_images"


def keep_images(database: Database) -> bool:
    with database.session() as session:
        setting = session.get(AppSetting, KEEP_IMAGES_KEY)
        return setting is not None and setting.value == "on"


def set_keep_images(database: Database, actor: Actor, keep: bool) -> None:
    """Turn keeping de-identified images on or off (an audited admin action)."""
    with audit.audited(database) as session:
        check_admin(session, actor)
        session.merge(AppSetting(key=KEEP_IMAGES_KEY, value="on" if keep else "off"))
        audit.append(session, audit.Event(actor.username, actor.role,
                                          actions.KEEP_IMAGES, detail={"keep": keep}))


def image_path(images_dir: Path, sha256: str) -> Path:
    return images_dir / f"{sha256}.png"


def store_image(images_dir: Path, sha256: str, gray: np.ndarray) -> Path:
    """Write the pixels once; the same upload again finds its file already there."""
    path = image_path(images_dir, sha256)
    if not path.is_file():
        images_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        Image.fromarray(gray).save(partial, format="PNG")
        partial.replace(path)
    return path
