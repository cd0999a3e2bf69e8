"""The headless CLI contract other tools depend on: JSON lines, error lines, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.decode import collect_files, decode_file
from model.errors import ImageError
from model.labels import CLASS_NAMES
from model.predictor import Predictor
from model.run_dir import MODEL_FILE, read_metadata
from testkit import REPO_ROOT
from testkit.model_factory import shipped_run_dir
from testkit.predict_cli import predict_cli
from testkit.synthetic_data import synthetic_xray

RESULT_KEYS = {"file", "label", "probabilities", "model", "validated_at_site"}
# The shipped run has age heads (a JPEG's age group is estimated) and a feature bank.
SHIPPED_KEYS = RESULT_KEYS | {"age_group", "age_group_source", "age_group_probability",
                              "familiar"}


def run_module_cli(*args: str | Path) -> subprocess.CompletedProcess:
    """The real entry point, `python -m model.predict`, in its own process (the other tests
    run the same main() in process: testkit.predict_cli)."""
    return subprocess.run(
        [sys.executable, "-m", "model.predict", *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def run_dir(factory_model_dir) -> Path:
    return factory_model_dir


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """A folder tree of good and bad files, and one file outside it named on its own."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    nested = root / "folder" / "nested"
    nested.mkdir(parents=True)
    paths = {
        "empty": root / "folder" / "a_empty.png",
        "random": root / "folder" / "b_random.png",
        "png": root / "folder" / "c_xray.png",
        "jpeg": nested / "d_xray.JPG",
        "ignored": root / "folder" / "notes.txt",
        "alone": root / "alone.jpeg",
    }
    paths["empty"].write_bytes(b"")
    paths["random"].write_bytes(rng.bytes(2048))
    Image.fromarray(synthetic_xray(0, rng, (120, 90))).save(paths["png"])
    Image.fromarray(synthetic_xray(3, rng, (200, 260))).save(paths["jpeg"], format="JPEG")
    paths["ignored"].write_text("not an image")
    Image.fromarray(synthetic_xray(2, rng, (80, 80))).save(paths["alone"], format="JPEG")
    return paths


def _image_error(path: Path) -> str:
    with pytest.raises(ImageError) as caught:
        decode_file(path)
    return str(caught.value)


def test_folders_are_searched_recursively_for_image_files(images):
    found = collect_files([images["png"].parent, images["alone"]])
    expected = [images[key] for key in ("empty", "random", "png", "jpeg", "alone")]
    assert found == expected


def test_cli_prints_one_json_line_per_file(run_dir, images):
    # batch size 2: the first batch holds only unusable files, the rest mix across batches
    result = run_module_cli(images["png"].parent, images["alone"], "--model", run_dir,
                            "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    order = ("empty", "random", "png", "jpeg", "alone")
    assert [record["file"] for record in records] == [str(images[key]) for key in order]

    for key in ("empty", "random"):
        record = records[order.index(key)]
        assert record == {"file": str(images[key]), "error": _image_error(images[key])}

    predictor = Predictor.load(run_dir)
    for key in ("png", "jpeg", "alone"):
        record = records[order.index(key)]
        assert set(record) == RESULT_KEYS
        assert list(record["probabilities"]) == list(CLASS_NAMES)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
        assert record["model"] == "test-model-1"
        expected = predictor.predict(decode_file(images[key]))
        np.testing.assert_allclose(list(record["probabilities"].values()),
                                   list(expected.values()), atol=1e-5)


def test_missing_path_is_a_usage_error(tmp_path, images):
    result = predict_cli(images["png"], tmp_path / "missing.png")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "missing.png" in result.stderr


def test_a_folder_that_is_not_a_run_dir_is_a_usage_error(tmp_path, images):
    result = predict_cli(images["png"], "--model", tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{MODEL_FILE} is missing" in result.stderr


@pytest.mark.parametrize("size", ["0", "many"])
def test_a_bad_batch_size_is_a_usage_error(images, size):
    result = predict_cli(images["png"], "--batch-size", size)
    assert result.returncode == 2
    assert "--batch-size" in result.stderr


def test_shipped_model_cli_on_a_real_xray(cxr4_dir):
    shipped = shipped_run_dir()
    xray = next((cxr4_dir / "val" / "COVID19").glob("*.jpg"))
    result = predict_cli(xray, "--model", shipped)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert set(record) == SHIPPED_KEYS
    assert record["age_group"] == "adult" and record["age_group_source"] == "estimated"
    assert record["file"] == str(xray)
    assert list(record["probabilities"]) == list(CLASS_NAMES)
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert record["model"] == read_metadata(shipped).version
    assert record["validated_at_site"] is None  # the shipped model: validated at no site


def test_lung_masks_are_written_and_lines_gain_the_heat_share(tmp_path, cxr4_dir, images):
    xrays = [next((cxr4_dir / "val" / label).glob("*.jpg")) for label in ("COVID19", "NORMAL")]
    masks = tmp_path / "masks"
    result = predict_cli(*xrays, images["empty"], "--model", shipped_run_dir(), "--lung-masks",
                         masks)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(records[-1]) == {"file", "error"}  # a refused file: no mask, no share
    assert sorted(path.name for path in masks.iterdir()) == sorted(
        f"{xray.stem}.png" for xray in xrays)
    for xray, record in zip(xrays, records, strict=False):
        keys = SHIPPED_KEYS | {"heat_in_lungs"}  # and, for a child's film, what is not assessed
        assert keys <= set(record) <= keys | {"age_group_not_assessed"}
        assert 0.0 <= record["heat_in_lungs"] <= 1.0
        mask = np.asarray(Image.open(masks / f"{xray.stem}.png"))
        assert mask.shape == decode_file(xray).gray.shape
        assert set(np.unique(mask)) == {0, 255} and 0.1 < (mask == 255).mean() < 0.6


def test_lung_masks_do_not_apply_to_the_pacs(tmp_path):
    result = predict_cli("--pacs", "http://127.0.0.1:9/dicom-web", "--lung-masks", tmp_path)
    assert result.returncode == 2 and "--lung-masks" in result.stderr


def test_the_installed_command_runs_the_same_cli():
    import importlib
    import tomllib

    from pipeline import predict

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["cxr-predict"].partition(":")
    assert getattr(importlib.import_module(module), name) is predict.main
