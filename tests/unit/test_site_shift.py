"""The shift check as the pages run it (webapp.site_shift), on the shipped model's real bank:
the weekly series from stored features, the last N analysed films, and which models' films a
bank can judge."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

from model.run_dir import DEFAULT_RUN_DIR, FEATURE_BANK_FILE
from model.shift import MIN_FILMS, ShiftCheck, ShiftError
from records import audit
from records.model_activations import Served
from testkit import stored_features
from webapp.site_shift import (
    ALIKE,
    SHIFTED,
    TOO_FEW,
    check_recent,
    comparable_versions,
    recent_weeks,
    weekly_shift,
)

MONDAY = datetime(2026, 11, 2, 9, 0)


@pytest.fixture(scope="module")
def check() -> ShiftCheck:
    return ShiftCheck.load(DEFAULT_RUN_DIR)


def test_weekly_series_scores_each_week_against_the_threshold(check):
    films = stored_features.val_films()
    like, unlike, few = films[:80], stored_features.shifted(films[80:160]), films[160:170]
    times = ([MONDAY + timedelta(hours=index) for index in range(80)]
             + [MONDAY + timedelta(days=9, minutes=index) for index in range(80)]
             + [MONDAY + timedelta(days=20, minutes=index) for index in range(10)])
    series = weekly_shift(times, np.concatenate([like, unlike, few]), check)
    assert series["week"].dt.strftime("%Y-%m-%d").tolist() == ["2026-11-02", "2026-11-09",
                                                               "2026-11-16"]
    assert series["films"].tolist() == [80, 80, 10]
    assert series["verdict"].tolist() == [ALIKE, SHIFTED, TOO_FEW]
    assert series["score"][1] > series["threshold"][1] > series["score"][0]
    assert series[["score", "threshold"]].iloc[2].isna().all()


def test_an_empty_trail_has_no_weeks(check):
    assert weekly_shift([], np.zeros((0, 0)), check).empty


def test_the_last_films_of_the_served_models_are_checked(database, check):
    val_films = stored_features.val_films()
    unlike = stored_features.shifted(val_films[:60])
    stored_features.store(database, "v1", unlike[:40])
    stored_features.store(database, "other backbone", val_films[60:200])
    with pytest.raises(ShiftError, match=f"Only 40 .* at least {MIN_FILMS}"):
        check_recent(database, check, ["v1"], 100)
    stored_features.store(database, "v1", unlike[40:])
    with pytest.raises(ShiftError, match=f"at least {MIN_FILMS}"):
        check_recent(database, check, ["v1"], 20)
    result = check_recent(database, check, ["v1"], 100)
    assert result.n == 60 and result.shifted
    assert not check_recent(database, check, ["other backbone"], 100).shifted
    series = recent_weeks(database, check, ["v1"], audit.now_utc())
    assert series["films"].tolist() == [60] and series["verdict"].tolist() == [SHIFTED]


def test_only_models_sharing_the_banks_backbone_are_comparable(check, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    with np.load(DEFAULT_RUN_DIR / FEATURE_BANK_FILE) as arrays:
        np.savez(other / FEATURE_BANK_FILE, **{**dict(arrays),
                                               "model_version": np.array("another base")})
    adapted = tmp_path / "adapted"
    adapted.mkdir()
    shutil.copy(DEFAULT_RUN_DIR / FEATURE_BANK_FILE, adapted)
    kept = [Served(DEFAULT_RUN_DIR, "shipped"), Served(adapted, "adapted"),
            Served(other, "other"), Served(tmp_path / "no-bank", "no bank")]
    assert comparable_versions(check, kept) == ["shipped", "adapted"]
