"""`python -m model.predict --ray`: the same JSON lines, in the same order, from Ray Data on the
session's real local cluster, for files and for a real Orthanc's studies."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.decode import collect_files
from model.predictor import Predictor
from pipeline.predict import predict_files
from testkit import REPO_ROOT
from testkit.model_factory import make_run_dir
from testkit.pacs_studies import SECRET, run_pacs_cli
from testkit.synthetic_data import synthetic_xray

PROBABILITY_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("run"))


def run_cli(*args: str | Path, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model.predict", *map(str, args)],
                          cwd=REPO_ROOT, env={**os.environ, **environment},
                          capture_output=True, text=True, timeout=600)


def assert_same_lines(ray_output: str, plain_output: str) -> None:
    """Equal line by line; probabilities to 1e-6 (Ray Data may batch the images differently)."""
    ray_lines = [json.loads(line) for line in ray_output.splitlines()]
    plain_lines = [json.loads(line) for line in plain_output.splitlines()]
    assert len(ray_lines) == len(plain_lines) > 0
    for ray_line, plain_line in zip(ray_lines, plain_lines, strict=True):
        ray_probabilities = ray_line.pop("probabilities", {})
        plain_probabilities = plain_line.pop("probabilities", {})
        assert ray_line == plain_line
        assert ray_probabilities.keys() == plain_probabilities.keys()
        assert all(abs(ray_probabilities[name] - p) <= PROBABILITY_TOLERANCE
                   for name, p in plain_probabilities.items())


def test_ray_prints_the_plain_lines_in_order(ray_address, run_dir, tmp_path):
    rng = np.random.default_rng(3)
    for index in range(9):
        Image.fromarray(synthetic_xray(index % 3, rng, (90 + index, 80))).save(
            tmp_path / f"image_{index}.png")
    (tmp_path / "notes.png").write_text("not an image")
    plain = io.StringIO()  # the plain CLI's own function, in this process (one start saved)
    predict_files(collect_files([tmp_path]), Predictor.load(run_dir), 4, plain)
    on_ray = run_cli("--ray", "--model", run_dir, "--batch-size", "4", tmp_path,
                     RAY_ADDRESS=ray_address)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert_same_lines(on_ray.stdout, plain.getvalue())
    assert any('"error"' in line for line in on_ray.stdout.splitlines())


def test_ray_prints_the_plain_pacs_lines_in_order(ray_address, pacs_archive, run_dir):
    plain = run_pacs_cli(pacs_archive, "--model", run_dir)
    on_ray = run_cli("--pacs", pacs_archive.orthanc.dicomweb_url, "--ray", "--model", run_dir,
                     RAY_ADDRESS=ray_address,
                     **pacs_archive.environment(CXR_PACS_KEY_SECRET=SECRET))
    assert plain.returncode == on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert_same_lines(on_ray.stdout, plain.stdout)
    assert SECRET not in on_ray.stdout
