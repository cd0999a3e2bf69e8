"""The training CLI end to end on a tiny synthetic dataset, and the evaluation CLI on its run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from model.labels import CLASS_NAMES
from model.predictor import Predictor
from model.preprocess import resize_gray
from model.run_dir import (
    CALIBRATION_FILE,
    HISTORY_FILE,
    METADATA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    TRAIN_LOG_FILE,
    read_calibration,
    read_history,
    read_json,
    read_metadata,
    write_calibration,
)
from model.run_metrics import read_metrics
from testkit.synthetic_data import make_dataset, synthetic_xray
from training import export_backbone
from training.backbones import BackboneWeightsError, get_backbone
from training.base_model import (
    backbone_of,
    contract_path,
    copy_backbone_weights,
    load_exported_backbone,
)
from training.classifier import build_classifier
from training.config import TrainConfig
from training.schedule import epoch_checkpoints
from training.train import train

METRIC_KEYS = {"classes", "accuracy", "macro_f1", "confusion_matrix", "per_class", "roc",
               "pneumonia_vs_normal", "calibration"}


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), per_class=8, val_per_class=4)


@pytest.fixture(scope="module")
def training_run(data_dir, tmp_path_factory):
    """(run directory, the finished training process) of one short two-stage run."""
    out = tmp_path_factory.mktemp("run")
    result = run_module(
        "training.train", "--data", str(data_dir), "--out", str(out), "--weights", "none",
        "--image-size", "64", "--batch-size", "8", "--epochs-frozen", "1",
        "--epochs-finetune", "1", "--limit-per-class", "6", "--samples-per-epoch", "none",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="module")
def run_dir(training_run):
    return training_run[0]


def test_each_epoch_draws_a_progress_bar_even_without_a_terminal(training_run):
    stderr = training_run[1].stderr
    for bar in ("frozen epoch 1/1", "finetune epoch 2/2"):
        assert re.search(bar + r": 100%\|.*\| 3/3 \[", stderr), f"no finished bar {bar!r}"


def test_run_directory_holds_every_artifact(run_dir):
    for name in (MODEL_FILE, METADATA_FILE, HISTORY_FILE, METRICS_FILE, CALIBRATION_FILE,
                 TRAIN_LOG_FILE):
        assert (run_dir / name).is_file(), name


def test_metadata_describes_the_model(run_dir):
    metadata = read_metadata(run_dir)
    assert metadata.classes == CLASS_NAMES
    assert metadata.image_size == 64
    assert metadata.backbone == "efficientnet_lite0"
    assert metadata.gradcam_layer == "top_activation"
    assert metadata.preprocessing.normalization == "lite0"
    assert metadata.weights_source.startswith("none")
    assert metadata.dataset["train"] == dict.fromkeys(CLASS_NAMES, 6)
    assert metadata.dataset["val"] == dict.fromkeys(CLASS_NAMES, 4)
    assert metadata.config["seed"] == metadata.seed and metadata.software["keras"]
    assert set(read_json(run_dir / METADATA_FILE)) == set(metadata.to_dict()), "every key read"


def test_history_covers_both_stages(run_dir):
    history = read_history(run_dir)
    assert [record["stage"] for record in history] == ["frozen", "finetune"]
    assert [record["epoch"] for record in history] == [1, 2]
    for record in history:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                "elapsed_seconds"} <= set(record)
    assert history[0]["elapsed_seconds"] < history[1]["elapsed_seconds"]
    assert history[1]["learning_rate"] < history[0]["learning_rate"], "fine-tuning LR is smaller"


def test_metrics_follow_the_contract(run_dir):
    metrics = json.loads((run_dir / METRICS_FILE).read_text())  # the file other tools read
    assert METRIC_KEYS <= set(metrics)
    read_metrics(run_dir)  # and the product's typed reader takes it
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (4, 4) and matrix.sum(axis=1).tolist() == [4, 4, 4, 4]
    assert {"auc", "sensitivity", "specificity"} <= set(metrics["pneumonia_vs_normal"])
    assert "ece" in metrics["calibration"]
    assert read_calibration(run_dir).temperature > 0


def test_evaluate_cli_writes_the_same_metrics(run_dir, data_dir, tmp_path):
    out = tmp_path / "evaluated.json"
    result = run_module("training.evaluate", "--model", str(run_dir), "--data", str(data_dir),
                        "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert METRIC_KEYS <= set(metrics)
    assert np.array(metrics["confusion_matrix"]).sum() == 16


def test_recalibrate_refits_the_temperature_on_a_folder_and_rewrites_the_reports(
    run_dir, data_dir, tmp_path
):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    write_calibration(copy, replace(read_calibration(copy), temperature=50.0))
    result = run_module("training.evaluate", "--model", str(copy), "--data", str(data_dir),
                        "--recalibrate")
    assert result.returncode == 0, result.stderr[-3000:]
    calibration, trained = read_calibration(copy), read_calibration(run_dir)
    assert calibration.temperature == pytest.approx(trained.temperature, rel=1e-3), (
        "refitted on the same val split, the temperature is the one training fitted")
    assert calibration.ece_after_cross_validated is not None
    assert np.array(read_metrics(copy).confusion_matrix).sum() == 16


def test_missing_weights_file_fails_at_once(data_dir, tmp_path):
    result = run_module("training.train", "--data", str(data_dir), "--out", str(tmp_path / "r"),
                        "--weights", str(tmp_path / "absent.pth"), "--image-size", "64")
    assert result.returncode == 2
    assert "absent.pth" in result.stderr and "does not exist" in result.stderr


def test_data_folder_without_train_is_a_usage_error(tmp_path):
    result = run_module("training.train", "--data", str(tmp_path), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "train/" in result.stderr


def test_an_interrupted_run_is_finished_from_its_best_checkpoint(run_dir, data_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    for name in (MODEL_FILE, METADATA_FILE, HISTORY_FILE, METRICS_FILE, CALIBRATION_FILE):
        (copy / name).unlink()
    result = run_module(
        "training.train", "--data", str(data_dir), "--out", str(copy), "--weights", "none",
        "--image-size", "64", "--batch-size", "8", "--epochs-frozen", "1",
        "--epochs-finetune", "1", "--limit-per-class", "6", "--finish-from-checkpoint",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    after_loading = result.stderr.split("weights from")[-1]
    assert not re.search(r"(frozen|finetune) epoch \d", after_loading), "nothing was trained"
    history = json.loads((copy / HISTORY_FILE).read_text())
    assert history == json.loads((run_dir / HISTORY_FILE).read_text())
    assert json.loads((copy / METRICS_FILE).read_text())["confusion_matrix"] == json.loads(
        (run_dir / METRICS_FILE).read_text())["confusion_matrix"]
    metadata = json.loads((copy / METADATA_FILE).read_text())
    assert metadata["config"]["finish_from_checkpoint"] is True
    assert metadata["training_seconds"] >= history[-1]["elapsed_seconds"]


def test_wise_alpha_ships_the_mixture_of_the_two_stages_ends(run_dir, data_dir, tmp_path):
    """WiSE-FT: every shipped weight lies between the end of stage 1 and the end of stage 2,
    at the fraction --wise-alpha gives (here half way)."""
    copy = shutil.copytree(run_dir, tmp_path / "run")
    config = TrainConfig(data=(data_dir,), out=copy, weights="none", image_size=64,
                         batch_size=8, epochs_frozen=1, epochs_finetune=1, limit_per_class=6,
                         samples_per_epoch=None, finish_from_checkpoint=True, wise_alpha=0.5)
    train(config)

    def weights(path: Path) -> list[np.ndarray]:
        return keras.saving.load_model(path, compile=False).get_weights()

    start = weights(copy / "checkpoints" / "frozen.keras")
    end = weights(copy / "checkpoints" / "finetune.keras")
    shipped = weights(copy / MODEL_FILE)
    moved = [i for i, (a, b) in enumerate(zip(start, end, strict=True)) if not np.allclose(a, b)]
    assert moved, "stage 2 changed no weight: the test would prove nothing"
    for a, b, mixed in zip(start, end, shipped, strict=True):
        np.testing.assert_allclose(mixed, 0.5 * a + 0.5 * b, rtol=1e-5, atol=1e-6)
    assert read_metadata(copy).config["wise_alpha"] == 0.5


def test_finetune_soup_ships_the_mean_of_the_last_epochs_weights(run_dir, data_dir, tmp_path):
    """--finetune-soup N: the stage-2 end is the uniform mean of its last N epochs' weights
    (here the run's one epoch and a shifted copy standing for a later one)."""
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (epoch,) = epoch_checkpoints(copy)  # the fixture's run fine-tunes for one epoch
    model = keras.saving.load_model(copy / "checkpoints" / "finetune.keras", compile=False)
    model.load_weights(epoch)
    first = model.get_weights()
    model.set_weights([value + 1.0 if value.dtype.kind == "f" else value for value in first])
    model.save_weights(copy / "checkpoints" / "finetune-epoch-99.weights.h5")
    config = TrainConfig(data=(data_dir,), out=copy, weights="none", image_size=64,
                         batch_size=8, epochs_frozen=1, epochs_finetune=1, limit_per_class=6,
                         samples_per_epoch=None, finish_from_checkpoint=True, wise_alpha=1.0,
                         finetune_soup=2)
    train(config)
    shipped = keras.saving.load_model(copy / MODEL_FILE, compile=False).get_weights()
    for value, mixed in zip(first, shipped, strict=True):
        expected = value + 0.5 if value.dtype.kind == "f" else value
        np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-6)
    train(replace(config, finetune_soup=3))  # a run that stopped sooner: all its epochs
    shipped = keras.saving.load_model(copy / MODEL_FILE, compile=False).get_weights()
    np.testing.assert_allclose(shipped[0], first[0] + 0.5, rtol=1e-5, atol=1e-6)
    for file in epoch_checkpoints(copy):
        file.unlink()
    with pytest.raises(FileNotFoundError, match="pass --finetune-soup 0"):
        train(config)


def test_soup_with_another_run_ships_the_mean_of_both_models(run_dir, data_dir, tmp_path):
    """--soup-with RUN: the finished weights are averaged uniformly with the other run's model
    file, and the metadata names that run's version; another network is refused."""
    other = shutil.copytree(run_dir, tmp_path / "other")
    model = keras.saving.load_model(other / "checkpoints" / "finetune.keras", compile=False)
    model.set_weights([value + 1.0 if value.dtype.kind == "f" else value
                       for value in model.get_weights()])
    model.save(other / MODEL_FILE)
    copy = shutil.copytree(run_dir, tmp_path / "run")
    config = TrainConfig(data=(data_dir,), out=copy, weights="none", image_size=64,
                         batch_size=8, epochs_frozen=1, epochs_finetune=1, limit_per_class=6,
                         samples_per_epoch=None, finish_from_checkpoint=True, wise_alpha=1.0,
                         soup_with=str(other))
    train(config)
    own = keras.saving.load_model(copy / "checkpoints" / "finetune.keras",
                                  compile=False).get_weights()
    shipped = keras.saving.load_model(copy / MODEL_FILE, compile=False).get_weights()
    for value, mixed in zip(own, shipped, strict=True):
        expected = value + 0.5 if value.dtype.kind == "f" else value
        np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-6)
    assert read_metadata(copy).souped_with == [read_metadata(other).version]
    wider = build_classifier(get_backbone("efficientnet_lite0"), "none", 64, 12, 0.1)[0]
    wider.save(other / MODEL_FILE)
    with pytest.raises(ValueError, match="not the same network"):
        train(config)


def test_wise_alpha_outside_zero_to_one_is_refused(run_dir, data_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    result = run_module(
        "training.train", "--data", str(data_dir), "--out", str(copy), "--weights", "none",
        "--image-size", "64", "--finish-from-checkpoint", "--wise-alpha", "1.5",
    )
    assert result.returncode == 2 and "--wise-alpha must lie in [0, 1]" in result.stderr


def test_finishing_without_checkpoints_is_a_clear_error(data_dir, tmp_path):
    result = run_module("training.train", "--data", str(data_dir), "--out", str(tmp_path / "r"),
                        "--weights", "none", "--image-size", "64", "--finish-from-checkpoint")
    assert result.returncode == 2 and "no stage checkpoint" in result.stderr


def _backbone(run: Path) -> keras.Model:
    return backbone_of(keras.saving.load_model(run / MODEL_FILE, compile=False))


def test_an_exported_backbone_gives_the_runs_own_features(run_dir, tmp_path):
    out = tmp_path / "base" / "cxr.weights.h5"
    assert export_backbone.main(["--run", str(run_dir), "--out", str(out)]) == 0
    contract = json.loads(contract_path(out).read_text())
    assert contract["backbone"] == "efficientnet_lite0" and contract["image_size"] == 64
    assert contract["input"]["dtype"] == "uint8" and contract["input"]["shape"] == [64, 64]
    assert contract["preprocessing"]["normalization"] == "lite0"
    assert contract["feature_size"] == 1280
    assert contract["source_run_version"] == read_metadata(run_dir).version

    exported = load_exported_backbone(out)
    rng = np.random.default_rng(3)
    images = np.stack([resize_gray(synthetic_xray(label % 4, rng, (72, 88)), 64)
                       for label in range(6)])
    _, features = Predictor.load(run_dir).logits_and_features(images)
    pooled = keras.ops.convert_to_numpy(keras.ops.mean(exported.model(images), axis=(1, 2)))
    np.testing.assert_allclose(pooled, features, atol=1e-6, rtol=0)

    classifier, _ = build_classifier(get_backbone("efficientnet_lite0"), "none", 64, 4, 0.4)
    with_weights = [layer for layer in exported.model.layers if layer.weights]
    assert copy_backbone_weights(exported, classifier) == len(with_weights) > 50
    np.testing.assert_allclose(backbone_of(classifier)(images), exported.model(images), atol=1e-6)


def test_training_from_a_run_starts_from_its_backbone_with_a_new_head(run_dir, data_dir,
                                                                       tmp_path):
    out = tmp_path / "from_run"
    result = run_module(
        "training.train", "--data", str(data_dir), "--out", str(out), "--weights", str(run_dir),
        "--batch-size", "8", "--epochs-frozen", "1", "--epochs-finetune", "0",
        "--limit-per-class", "2", "--samples-per-epoch", "8",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metadata, base = read_metadata(out), read_metadata(run_dir)
    assert metadata.image_size == base.image_size == 64, "the base run's size by default"
    assert metadata.weights_source == f"trained run {base.version} ({run_dir})"
    # One frozen step trains the head only: the backbone is the base run's, weight for weight.
    started, trained = _backbone(run_dir), _backbone(out)
    assert len(started.weights) == len(trained.weights) > 100
    for before, after in zip(started.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=before.path)
    new_head = keras.saving.load_model(out / MODEL_FILE, compile=False).get_layer("logits")
    old_head = keras.saving.load_model(run_dir / MODEL_FILE, compile=False).get_layer("logits")
    assert not np.array_equal(new_head.get_weights()[0], old_head.get_weights()[0]), "new head"


def test_a_base_of_another_backbone_is_refused_by_name(run_dir, data_dir, tmp_path):
    config = TrainConfig(data=(data_dir,), out=tmp_path / "r", weights=str(run_dir),
                         backbone="resnet50")
    with pytest.raises(BackboneWeightsError, match="--backbone efficientnet_lite0"):
        train(config)
