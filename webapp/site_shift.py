"""Is this site like the training films? The batch shift check (model.shift) as the Sites and
Monitoring pages run it: on an uploaded .zip of films, on the last N analysed films' stored
features (records.analysis_features), or week by week, always against the served run's bank.

Stored features are comparable with a bank when the model that made them shares its backbone:
an adapted run (training.adapt) keeps its base's backbone and bank, so its films and its base's
count together; another base model's do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from model.bounded_zip import ZipLimits
from model.run_dir import RunFileError, read_feature_bank
from model.shift import MIN_FILMS, ShiftCheck, ShiftError, ShiftResult
from model.shift_films import accepted_features, zip_loaders
from records import analysis_features
from records.db import Database
from records.model_activations import Served

if TYPE_CHECKING:
    from model.predictor import Predictor

WEEKS = 12  # the weeks Monitoring scores, the newest last
TOO_FEW, SHIFTED, ALIKE = "too few films", "differs from training", "like training"
SERVER_MODE = ("The model runs on a model server here, which gives the app no features of the "
               "films it reads, so this check cannot run from this page: run python -m "
               "training.site_check PATH on the server's machine.")


def bank_backbone(run_dir: Path) -> str | None:
    """The run whose backbone made a run's bank features; None without a readable bank."""
    try:
        return str(read_feature_bank(run_dir, ("model_version",))["model_version"])
    except RunFileError:
        return None


def comparable_versions(check: ShiftCheck, kept: Sequence[Served]) -> list[str]:
    """The kept models whose films' features ``check``'s bank can judge (the same backbone)."""
    return [model.version for model in kept if bank_backbone(model.run_dir) == check.backbone]


def check_zip(predictor: Predictor, check: ShiftCheck, name: str, data: bytes,
              limits: ZipLimits) -> tuple[ShiftResult, int]:
    """The verdict on a .zip's accepted films, and how many were not used; ShiftError when
    too few are accepted. ``predictor``: a model loaded here (a server's client gives no
    features)."""
    features, skipped = accepted_features(predictor, zip_loaders(name, data, limits))
    return check.check(features), skipped


def check_recent(database: Database, check: ShiftCheck, versions: Sequence[str],
                 count: int) -> ShiftResult:
    """The verdict on the last ``count`` films analysed by ``versions``; ShiftError, saying how
    many are stored, when there are fewer than MIN_FILMS."""
    if count < MIN_FILMS:
        raise ShiftError(f"Choose at least {MIN_FILMS} films.")
    features = analysis_features.latest(database, versions, count)
    if len(features) < MIN_FILMS:
        raise ShiftError(f"Only {len(features)} analysed films of {', '.join(versions)} have "
                         f"their features kept; the check needs at least {MIN_FILMS}. Analyse "
                         "more films, or check a .zip of them.")
    return check.check(features)


def weekly_shift(times: Sequence[datetime], features: np.ndarray, check: ShiftCheck
                 ) -> pd.DataFrame:
    """Per week (Monday, UTC) with films: how many, and the batch score and its threshold at
    that size; a week with fewer than MIN_FILMS films gets no score ("too few films")."""
    columns = ["week", "films", "score", "threshold", "verdict"]
    if not len(times):
        return pd.DataFrame(columns=columns)
    days = pd.to_datetime(pd.Series(times)).dt.floor("D")
    weeks = days - pd.to_timedelta(days.dt.weekday, unit="D")
    rows = []
    for week, positions in weeks.groupby(weeks).groups.items():
        films = features[np.asarray(positions)]
        if len(films) < MIN_FILMS:
            rows.append((week, len(films), None, None, TOO_FEW))
            continue
        result = check.check(films)
        rows.append((week, len(films), result.score, result.threshold,
                     SHIFTED if result.shifted else ALIKE))
    return pd.DataFrame(rows, columns=columns)


def recent_weeks(database: Database, check: ShiftCheck, versions: Sequence[str],
                 now: datetime, weeks: int = WEEKS) -> pd.DataFrame:
    """``weekly_shift`` of the films analysed by ``versions`` in the last ``weeks`` weeks."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)
    times, features = analysis_features.since(database, versions,
                                              monday - timedelta(weeks=weeks - 1))
    return weekly_shift(times, features, check)
