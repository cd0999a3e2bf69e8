"""Every setting of the department's deployment in one place, read from the environment once.

Defaults run out of the box: a SQLite file in the data folder beside the code, the shipped
model. Hospital IT points ``CXR_DATABASE_URL`` at PostgreSQL and ``CXR_DATA_DIR`` at a
backed-up disk; ``CXR_MODEL_DIR`` serves another run directory (a new model on trial).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL_ENV = "CXR_DATABASE_URL"
DATA_DIR_ENV = "CXR_DATA_DIR"
IDLE_MINUTES_ENV = "CXR_SESSION_IDLE_MINUTES"
SQLITE_BUSY_ENV = "CXR_SQLITE_BUSY_SECONDS"
MODEL_DIR_ENV = "CXR_MODEL_DIR"
MODEL_URL_ENV = "CXR_MODEL_URL"
MODEL_TOKEN_ENV = "CXR_MODEL_TOKEN"
DATABASE_FILE = "cxr.db"
IMAGES_FOLDER = "images"
SITES_DIR_ENV = "CXR_SITES_DIR"
SITES_FOLDER = "sites"


@dataclass(frozen=True)
class Settings:
    """Where the data lives and how strict sign-in is."""

    data_dir: Path
    database_url: str
    session_idle_minutes: float = 30.0
    # Sign-in: after this many failures of one typed name from one client, that pair waits a
    # delay that doubles with each further failure up to the maximum; the correct password
    # works once it has passed. Other clients (the account's owner) are not held up.
    max_failed_sign_ins: int = 5
    sign_in_first_delay_seconds: float = 5.0
    sign_in_max_delay_seconds: float = 60.0
    feedback_edit_hours: float = 24.0
    # Monitoring: the last days' predicted-class mix against the validation mix.
    drift_window_days: int = 7
    drift_max_distance: float = 0.2  # total-variation distance that raises the warning
    drift_min_analyses: int = 30  # fewer analyses say too little to warn on
    # SQLite waits this long for another writer before the write (and so the analysis) fails.
    sqlite_busy_seconds: float = 10.0
    # The run directory the app serves; None: the shipped model (model/artifacts).
    model_dir: Path | None = None
    # A model server (python -m serving) the app uses instead of loading the model; then the
    # app process never imports TensorFlow (no lung segmenter either).
    model_url: str | None = None
    # The model server's shared secret: it refuses /predict and /metadata without it, and the
    # app sends it (Authorization: Bearer). Kept out of repr so that it is never logged.
    model_token: str | None = field(default=None, repr=False)
    # Worklist batches: what one uploaded .zip may expand to (checked from its headers and again
    # while each member is read), and what one batch may hold in memory at once.
    zip_max_members: int = 2000
    zip_max_total_bytes: int = 1_000_000_000
    zip_max_ratio: float = 100.0  # uncompressed / compressed; X-rays compress about 1-4 to 1
    batch_chunk_images: int = 32  # images decoded and analysed together
    batch_chunk_bytes: int = 200_000_000  # file bytes held at once while a chunk is analysed
    batch_max_megapixels: float = 400.0  # decoded pixels a worklist keeps for opening rows
    worklist_batches_per_minute: int = 6  # per user: a flood of batches is refused
    # Site onboarding (the Sites page): where adapted run directories and their jobs' films and
    # logs go; None: the data folder's sites/ (beside the database and kept images).
    sites_dir_override: Path | None = None

    @property
    def images_dir(self) -> Path:
        """Where de-identified images are kept, when an admin turns that on."""
        return self.data_dir / IMAGES_FOLDER

    @property
    def sites_dir(self) -> Path:
        """Where the Sites page writes adapted run directories ($CXR_SITES_DIR)."""
        return self.sites_dir_override or self.data_dir / SITES_FOLDER


SETTINGS_ENV = (MODEL_DIR_ENV, DATA_DIR_ENV, DATABASE_URL_ENV, IDLE_MINUTES_ENV, SQLITE_BUSY_ENV,
                MODEL_URL_ENV, SITES_DIR_ENV, MODEL_TOKEN_ENV)


def load_settings() -> Settings:
    """The settings from the environment, with defaults a newcomer can run.

    Built once per environment: a server's environment does not change under it, and a test
    that sets a variable gets the settings of its own environment.
    """
    return _settings(tuple(os.environ.get(name, "").strip() for name in SETTINGS_ENV))


@functools.cache
def _settings(values: tuple[str, ...]) -> Settings:
    env = dict(zip(SETTINGS_ENV, values, strict=True))
    data_dir = Path(env[DATA_DIR_ENV] or REPO_ROOT / "data")
    numbers = {name: float(env[key]) for name, key in
               (("session_idle_minutes", IDLE_MINUTES_ENV),
                ("sqlite_busy_seconds", SQLITE_BUSY_ENV)) if env[key]}
    return Settings(data_dir=data_dir,
                    database_url=env[DATABASE_URL_ENV] or f"sqlite:///{data_dir / DATABASE_FILE}",
                    model_dir=Path(env[MODEL_DIR_ENV]) if env[MODEL_DIR_ENV] else None,
                    model_url=env[MODEL_URL_ENV] or None,
                    model_token=env[MODEL_TOKEN_ENV] or None,
                    sites_dir_override=Path(env[SITES_DIR_ENV]) if env[SITES_DIR_ENV] else None,
                    **numbers)
