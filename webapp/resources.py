"""What every page shares: the run directory it serves, its one predictor, the database.

The run directory is the one an admin activated (records/model_activations.py, the Sites page),
else the settings' (records/settings.py): $CXR_MODEL_DIR when set (tests, a new model on
trial), else the shipped model in model/artifacts. The predictor cache is keyed by the run
directory, so a switch takes effect on the next page run, without a restart. With $CXR_MODEL_URL
set, the model is a model server's (python -m serving) and the predictor is its client
(serving.client): this process then never imports TensorFlow. Either way the pages hold a
``model.classifier.Classifier``.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from model.run_dir import DEFAULT_RUN_DIR
from model.shift import ShiftCheck
from model.site_validation import SiteValidated
from records.db import Database, open_database
from records.model_activations import active_run_dir
from records.roles import ADMIN
from records.settings import load_settings
from records.site_acceptances import accepted_validation
from webapp.plain_text import plain

if TYPE_CHECKING:
    from model.classifier import Classifier
    from model.predictor import Predictor
    from serving.client import ModelClient

def configured_run_dir() -> Path:
    """The settings' run directory: what the app serves until an admin activates another."""
    return load_settings().model_dir or DEFAULT_RUN_DIR


def run_dir() -> Path:
    """The run directory this server shows and predicts with: the activated one, else the
    settings'. A model server chooses its own model, so activations do not apply there."""
    if model_url():
        return configured_run_dir()
    return active_run_dir(app_database(), configured_run_dir())


def model_unavailable(error: Exception, role: str) -> str:
    """What a page says when the model cannot be loaded: why, with its paths, to an admin only;
    a radiologist is told to call one (server paths are no business of theirs)."""
    head = "The model could not be loaded, so no image can be analysed."
    if role == ADMIN:
        return f"{head} {plain(str(error))}"
    return f"{head} Please tell an admin: the Sites page shows which model is served."


def model_url() -> str | None:
    """The model server this app uses ($CXR_MODEL_URL), or None to load the model itself."""
    return load_settings().model_url


# Every model this process has served, by version: an open analysis is explained by the model
# that produced it after an admin activates another (the caches below keep them loaded anyway).
_SERVED: dict[str, Classifier] = {}


def load_predictor(model_dir: Path) -> SiteValidated:
    """The model the pages use: the model server's client with $CXR_MODEL_URL, else the run
    directory loaded in this process. Both raise ModelLoadError when there is none to use. Its
    predictions name the site an admin accepted its version at (read now, so an acceptance
    counts from the next page run), else the one its run was adapted at."""
    url = model_url()
    model = connect_model_server(url) if url else load_embedded(model_dir)
    _SERVED[model.version] = model
    accepted = accepted_validation(app_database(), model.version)
    return SiteValidated(model, None if accepted is None else accepted.acceptance)


def served_model(version: str) -> Classifier | None:
    """The model that gave a result of this version, while this process still has it; None once
    it is no longer loaded (a model server now serving another model answers for that one)."""
    model = _SERVED.get(version)
    return model if model is not None and model.version == version else None


@st.cache_resource(show_spinner="Connecting to the model server…")
def connect_model_server(url: str) -> ModelClient:
    """One client per server process and URL (not cached while the server cannot answer)."""
    from serving.client import ModelClient

    return ModelClient(url, load_settings().model_token)


@st.cache_resource(show_spinner="Loading the model…")
def load_embedded(model_dir: Path) -> Predictor:
    """Load and warm the model once per server process: the first upload is as fast as the rest."""
    from model.lungs import shipped_segmenter
    from model.predictor import Predictor

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


@st.cache_resource(show_spinner="Reading the model's training films (feature bank)…")
def load_shift_check(model_dir: Path) -> ShiftCheck:
    """The served run's shift check (model.shift), fitted once per run directory; ShiftError
    when its bank cannot judge a batch (none, or too few films)."""
    return ShiftCheck.load(model_dir)


@st.cache_resource(show_spinner="Opening the database…")
def open_app_database(url: str, sqlite_busy_seconds: float) -> Database:
    """One engine per server process and database URL, migrated on first use."""
    return open_database(url, sqlite_busy_seconds)


def app_database() -> Database:
    """The database the settings name ($CXR_DATABASE_URL, else the data folder's SQLite file)."""
    settings = load_settings()
    return open_app_database(settings.database_url, settings.sqlite_busy_seconds)
