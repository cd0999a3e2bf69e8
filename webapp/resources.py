"""What every page shares: the run directory it serves, its one predictor, the database.

The run directory comes from one place: $CXR_MODEL_DIR when set (tests, a new model
on trial), else the shipped model in model/artifacts.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import streamlit as st

from model.lungs import shipped_segmenter
from model.predictor import DEFAULT_RUN_DIR, Predictor
from webapp.db import Database, open_database
from webapp.settings import load_settings

MODEL_DIR_ENV = "CXR_MODEL_DIR"


def run_dir() -> Path:
    """The run directory this server shows and predicts with."""
    configured = os.environ.get(MODEL_DIR_ENV, "").strip()
    return Path(configured) if configured else DEFAULT_RUN_DIR


@st.cache_resource(show_spinner="Loading the model…")
def load_predictor(model_dir: Path) -> Predictor:
    """Load and warm the model once per server process: the first upload is as fast as the rest."""
    predictor = Predictor.load(model_dir)
    predictor.warm_up()
    segmenter = shipped_segmenter()  # the lung fields: loaded and traced once, too
    if segmenter is not None:
        segmenter.warm_up()
    # Streamlit collects garbage after every run (runner.postScriptGC); walking TensorFlow's
    # few hundred thousand long-lived objects each time cost ~0.2 s per run. Freeze them.
    gc.collect()
    gc.freeze()
    return predictor


@st.cache_resource(show_spinner="Opening the database…")
def open_app_database(url: str, sqlite_busy_seconds: float) -> Database:
    """One engine per server process and database URL, migrated on first use."""
    return open_database(url, sqlite_busy_seconds)


def app_database() -> Database:
    """The database the settings name ($CXR_DATABASE_URL, else the data folder's SQLite file)."""
    settings = load_settings()
    return open_app_database(settings.database_url, settings.sqlite_busy_seconds)
