"""Analysed films' features as the app stores them (records.analysis_features), made from real
features: the shipped bank's held-out val films, as they are or moved as another site's
scanner might move them. For the shift check's tests (webapp.site_shift, Sites, Monitoring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.prediction import Prediction
from model.run_dir import DEFAULT_RUN_DIR, FEATURE_BANK_FILE
from records import audit
from records.accounts import Actor
from records.db import Database
from webapp.audited_analysis import append_image, image_event

READER = Actor("rita", "radiologist")


def val_films(run_dir: Path = DEFAULT_RUN_DIR) -> np.ndarray:
    """A run's bank's own held-out val films: real features of films like the training ones."""
    with np.load(Path(run_dir) / FEATURE_BANK_FILE) as arrays:
        return arrays["features"][arrays["splits"] == "val"].astype(np.float32)


def shifted(films: np.ndarray) -> np.ndarray:
    """The same films as another site's scanner might give them: every feature moved."""
    return films + films.std(axis=0) * np.random.default_rng(1).normal(1.0, 0.2, films.shape[1])


def store(database: Database, version: str, films: np.ndarray) -> None:
    """One analysis audit row per film, by ``version``, each with its features beside it."""
    with audit.audited(database) as session:
        for row in films:
            prediction = Prediction.of({"NORMAL": 1.0}, version, features=row)
            append_image(session, image_event(READER, prediction, None, None, None, None, 1.0),
                         prediction)
