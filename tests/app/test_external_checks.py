"""External checks: folders of every layout, scored through the gate by `training.evaluate
--external`, recorded in metrics.json, shown in the model card and on the Model performance
page; and a cheap look at the shipped model on the real external sets."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.batch import classify
from model.decode import decode_file
from model.predictor import Predictor
from model.run_dir import METRICS_FILE, read_json, read_metadata, write_metadata
from records.settings import MODEL_DIR_ENV
from testkit.apptest import ADMIN
from testkit.model_factory import fit_synthetic_gate, make_run_dir, shipped_run_dir
from testkit.report_factory import write_reports
from testkit.synthetic_data import smooth_xray
from training import evaluate
from training.config import SHARED_DATA, TrainConfig
from training.data import DatasetError
from training.external import KNOWN_SETS, read_external
from training.model_card import render

README_LINE = "Synthetic adults from a hospital no model has seen"


def _write(path: Path, gray: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray).save(path)
    return path.name


def kermany_style(root: Path, seed: int = 1) -> Path:
    """`<LABEL>/*` images and a manifest `file,label,...` (as kermany_test_a), a README."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, count in (("NORMAL", 5), ("VIRAL_PNEUMONIA", 4), ("PNEUMONIA", 2)):
        for index in range(count):
            relative = f"{label}/{label.lower()}_{index}.png"
            _write(root / relative, smooth_xray(rng))
            rows.append({"file": relative, "label": label, "patient_id": f"x:{label}{index}"})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "README.md").write_text(f"# {README_LINE}\n\nMore text.\n")
    return root


def lungs_style(root: Path, seed: int = 2) -> Path:
    """images/ and masks/ with a manifest `image,mask,label,...` (as lungs/): adult normals,
    one of them a blank frame that the gate must refuse."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(6):
        gray = np.full((96, 80), 90, np.uint8) if index == 0 else smooth_xray(rng)
        _write(root / "images" / f"n{index}.jpg", gray)
        _write(root / "masks" / f"n{index}.png", np.zeros((96, 80), np.uint8))
        rows.append({"image": f"images/n{index}.jpg", "mask": f"masks/n{index}.png",
                     "label": "NORMAL", "source": "openist"})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "mask", "label", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("external")
    return {"hospital_x": kermany_style(root / "hospital_x"), "lungs": lungs_style(root / "lungs")}


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory, sets) -> Path:
    """A factory run with reports and a gate, then `training.evaluate --external` on both
    layouts, as a person would run it."""
    run_dir = write_reports(make_run_dir(tmp_path_factory.mktemp("run")))
    write_metadata(run_dir, replace(read_metadata(run_dir), config=TrainConfig().to_dict()))
    fit_synthetic_gate(run_dir)
    before = read_json(run_dir / METRICS_FILE)
    assert evaluate.main(["--model", str(run_dir), "--external", str(sets["hospital_x"]),
                          "--external", str(sets["lungs"])]) == 0
    assert {key: value for key, value in read_json(run_dir / METRICS_FILE).items()
            if key != "external"} == before, "every other metrics.json key kept as it was"
    return run_dir


def test_each_layout_is_read_with_its_labels_and_description(sets, tmp_path):
    kermany = read_external(sets["hospital_x"])
    assert kermany.labels.count("NORMAL") == 5 and kermany.labels.count("PNEUMONIA") == 2
    assert kermany.description == README_LINE
    lungs = read_external(sets["lungs"])
    assert set(lungs.labels) == {"NORMAL"} and len(lungs.paths) == 6
    assert all(path.parent.name == "images" for path in lungs.paths), "masks are not images"
    assert lungs.description == KNOWN_SETS["lungs"]
    folders = tmp_path / "plain"
    for label in ("NORMAL", "COVID19"):
        _write(folders / label / "a.png", smooth_xray(np.random.default_rng(0)))
    plain = read_external(folders)
    assert sorted(plain.labels) == ["COVID19", "NORMAL"]
    assert plain.description == "External folder plain."
    assert len(kermany.sample(4).paths) == 4 and kermany.sample(None) == kermany


def test_a_manifest_without_its_columns_is_named(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,diagnosis\na.png,NORMAL\n")
    with pytest.raises(DatasetError, match="label column"):
        read_external(tmp_path)


def test_evaluate_external_scores_each_set_through_the_gate(gated_run, sets):
    external = read_json(gated_run / METRICS_FILE)["external"]
    assert set(external) == {"hospital_x", "lungs"}
    predictor = Predictor.load(gated_run)
    for name, folder in sets.items():
        images = read_external(folder)
        predictions = [outcome.prediction
                       for outcome in classify(images.paths, decode_file, predictor)]
        refused = [prediction.refusal is not None for prediction in predictions]
        called = [prediction.label for prediction in predictions]
        normals = [call for call, label in zip(called, images.labels, strict=True)
                   if label == "NORMAL" and call is not None]
        figures = external[name]
        assert figures["n"] == len(images.paths)
        assert figures["refused"] == sum(refused) and figures["accepted"] == len(refused) - sum(
            refused)
        assert figures["normal_recall"] == pytest.approx(normals.count("NORMAL") / len(normals))
        assert 0 <= figures["ece"] <= 1
    assert external["lungs"]["refused"] >= 1, "the blank frame is refused"
    assert external["lungs"]["pneumonia_vs_normal_auc"] is None, "normals only: undefined"
    assert external["lungs"]["macro_f1"] is None
    assert external["hospital_x"]["pneumonia_vs_normal_auc"] is not None
    assert external["hospital_x"]["macro_f1"] is not None
    assert external["hospital_x"]["description"] == README_LINE


def test_evaluate_needs_data_or_an_external_folder(gated_run):
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(gated_run)])


def test_model_card_shows_each_external_set_and_what_it_is(gated_run):
    card = render(gated_run, [])
    section = card.split("## Hospitals and batches it was never trained on")[1].split("\n## ")[0]
    external = read_json(gated_run / METRICS_FILE)["external"]
    for name, figures in external.items():
        assert f"**{name}** ({figures['n']} images): {figures['description']}" in section
        assert f"| {name} | {figures['n']} | " in section
    assert card.index("By source and age group (val)") < card.index("never trained on")


@pytest.mark.usefixtures("app_database_url")
def test_performance_page_shows_the_external_checks(gated_run, monkeypatch):
    from testkit.apptest import open_page

    monkeypatch.setenv(MODEL_DIR_ENV, str(gated_run))
    at = open_page("views/performance.py", ADMIN)
    external = read_json(gated_run / METRICS_FILE)["external"]
    (table,) = [frame.value for frame in at.dataframe if "What it is" in frame.value.columns]
    assert list(table["Set"]) == list(external)
    assert list(table["Images"]) == [figures["n"] for figures in external.values()]
    assert list(table["What it is"]) == [figures["description"] for figures in external.values()]


def test_shipped_model_on_a_sample_of_the_real_external_sets():
    """Cheap: 10 images of each set. The full figures come from bench/external_checks.py."""
    run_dir = shipped_run_dir()
    folders = [SHARED_DATA / "kermany_test_a", SHARED_DATA / "lungs"]
    if not all((folder / "manifest.csv").is_file() for folder in folders):
        pytest.skip(f"the external sets are not at {SHARED_DATA} (the shared data is absent)")
    external = evaluate.evaluate_external(run_dir, folders, sample=10)
    assert [figures["n"] for figures in external.values()] == [10, 10]
    assert set(external["lungs"]["labels"]) == {"NORMAL"}
    assert set(external["kermany_test_a"]["labels"]) == {
        "NORMAL", "BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA"}
    for figures in external.values():
        accepted = sum(sum(calls.values()) for calls in figures["called"].values())
        assert accepted == figures["accepted"] == figures["n"] - figures["refused"]
