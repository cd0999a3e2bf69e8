"""The site check (training.site_check, model.shift) on the real shipped model and real films:
an unseen hospital and a later batch of a training hospital are flagged, the training sources'
own val films are not, and too few films are refused plainly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from model.run_dir import DEFAULT_RUN_DIR
from model.shift import MIN_FILMS, ShiftError
from pipeline.predict import collect_files
from testkit import REPO_ROOT
from training.config import SHARED_DATA
from training.feature_bank import FeatureBank

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "lungs").is_dir(),
                                reason=f"the shared data is not at {SHARED_DATA}")


@pytest.fixture(scope="module")
def shipped():
    from model.predictor import Predictor

    return Predictor.load(DEFAULT_RUN_DIR), FeatureBank.load(DEFAULT_RUN_DIR)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.site_check", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_cli_flags_an_unseen_hospital_with_one_json_line():
    result = run_cli(str(SHARED_DATA / "lungs"))
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(verdict) == {"n", "shifted", "score", "threshold", "method", "message"}
    assert verdict["n"] == 274 and verdict["shifted"] is True
    assert verdict["score"] > verdict["threshold"]
    assert "validate on local labelled films" in verdict["message"]


def test_a_later_batch_of_a_training_hospital_is_flagged(shipped):
    from training.site_check import site_check

    result = site_check(*shipped, [SHARED_DATA / "kermany_test_a"])
    assert result.shifted, result.message


def test_held_out_val_films_of_the_training_sources_are_not_flagged(shipped):
    from training.site_check import site_check

    files = collect_files([SHARED_DATA / root / "val" for root in ("cxr4", "adult")])
    every = np.random.default_rng(3).choice(len(files), 200, replace=False)
    result = site_check(*shipped, [files[index] for index in sorted(every)])
    assert result.n >= 190 and not result.shifted, result.message


def test_a_zip_of_films_is_read(shipped, tmp_path):
    from model.shift_films import accepted_features, path_loaders

    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted((SHARED_DATA / "lungs" / "images").iterdir())[:3]:
            handle.write(path, path.name)
    features, skipped = accepted_features(shipped[0], path_loaders([archive]))
    assert features.shape[0] == 3 and skipped == 0


def test_too_few_films_are_refused_plainly(shipped, tmp_path):
    from training.site_check import site_check

    few = sorted((SHARED_DATA / "lungs" / "images").iterdir())[:MIN_FILMS - 1]
    with pytest.raises(ShiftError, match=f"at least {MIN_FILMS}"):
        site_check(*shipped, few)
    result = run_cli(*map(str, few[:3]), str(tmp_path / "absent"))
    assert result.returncode == 1 and result.stdout == ""
    assert "site check refused" in result.stderr and f"at least {MIN_FILMS}" in result.stderr
