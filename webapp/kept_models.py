"""The models an admin may serve (the Sites page): the settings' model and every adapted run
directory kept under the sites folder, each checked before a switch: a readable run whose model
loads, so a switch never leaves every page without a model."""

from __future__ import annotations

from pathlib import Path

from model.errors import ModelLoadError
from model.run_dir import METADATA_FILE, RunFileError, read_metadata
from records.model_activations import ActivationError, Served
from webapp.resources import load_embedded


def kept_models(configured: Path, sites_dir: Path) -> list[Served]:
    """The settings' model (the shipped one unless CXR_MODEL_DIR names another) first, then every
    readable run directory under ``sites_dir``, newest first; a folder that is not a readable
    run (a job's, one half written) is not listed."""
    candidates = [configured] + sorted(
        (path for path in sites_dir.glob("*")
         if not path.name.startswith(".") and (path / METADATA_FILE).is_file()),
        key=lambda path: path.stat().st_mtime, reverse=True) if sites_dir.is_dir() else [
        configured]
    kept = []
    for run_dir in candidates:
        try:
            kept.append(Served(run_dir, read_metadata(run_dir).version))
        except RunFileError:
            continue
    return kept


def check_servable(run_dir: Path) -> None:
    """Load the run's model (cached: the switch then serves it at once); ActivationError, for
    the admin, when it cannot be served."""
    try:
        load_embedded(run_dir)
    except ModelLoadError as error:
        raise ActivationError(f"{run_dir} cannot be served: {error}. Nothing was changed."
                              ) from None
