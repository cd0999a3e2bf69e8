"""Normalisation inside the model: a format-1 run converts without retraining and predicts as
before, the shipped model (converted) gives the old pipeline's probabilities on real val
X-rays, and its architecture is the one training builds today."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from model.predictor import Predictor
from model.preprocess import resize_gray
from model.run_dir import (
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    MODEL_FILE,
    RunFileError,
    read_metadata,
    write_json,
)
from testkit.model_factory import (
    IMAGE_SIZE,
    build_model,
    make_run_dir,
    metadata,
    shipped_run_dir,
)
from testkit.synthetic_data import synthetic_xray
from training.backbones import get_backbone
from training.classifier import build_classifier
from training.convert_normalization import ConversionError, convert_run, main

TOLERANCE = 1e-5


def make_format_1_run(run_dir):
    """A run as format 1 wrote it: the model takes "tf"-normalised RGB, the metadata says so."""
    make_run_dir(run_dir)
    build_model(normalization=None).save(run_dir / MODEL_FILE)
    content = metadata().to_dict()
    write_json(run_dir / METADATA_FILE, {
        **content, "format_version": 1,
        "preprocessing": {**content["preprocessing"], "color": "gray_to_rgb"}})
    return run_dir


def format_1_logits(model: keras.Model, grays: list[np.ndarray]) -> np.ndarray:
    """The old pipeline: resize, repeat to RGB and normalise ("tf", to [-1, 1]) outside."""
    rgb = np.stack([np.repeat(resize_gray(gray, IMAGE_SIZE)[..., None], 3, axis=-1)
                    for gray in grays]).astype(np.float32)
    return np.asarray(keras.Model(model.input, model.get_layer("logits").output)(
        rgb / 127.5 - 1.0))


def test_a_format_1_run_is_refused_with_how_to_convert_it(tmp_path):
    run_dir = make_format_1_run(tmp_path / "run")
    with pytest.raises(RunFileError, match="format_version 1.*training.convert_normalization"):
        read_metadata(run_dir)


def test_conversion_keeps_the_outputs_of_a_synthetic_model(tmp_path):
    run_dir = make_format_1_run(tmp_path / "run")
    old = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    rng = np.random.default_rng(3)
    grays = [synthetic_xray(label, rng, size)
             for label, size in enumerate([(90, 120), (64, 64), (300, 200), (500, 410)])]
    assert main(["--run", str(run_dir)]) == 0
    converted = Predictor.load(run_dir)
    assert converted.metadata.format_version == METADATA_FORMAT_VERSION
    new_logits = converted.logits(np.stack([converted.preprocess(gray) for gray in grays]))
    np.testing.assert_allclose(new_logits, format_1_logits(old, grays), rtol=0, atol=TOLERANCE)
    converted.explain(grays[0])  # Grad-CAM still finds its layer and a gradient path


def test_a_converted_run_is_not_converted_again(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    with pytest.raises(ConversionError, match="only format 1 runs need converting"):
        convert_run(run_dir)
    assert main(["--run", str(run_dir)]) == 2


def test_the_shipped_model_is_the_architecture_training_builds():
    shipped = keras.saving.load_model(shipped_run_dir() / MODEL_FILE, compile=False)
    run = read_metadata(shipped_run_dir())
    built, _ = build_classifier(get_backbone(run.backbone), "none", run.image_size,
                                len(run.classes), run.config["dropout"])

    def layers(model: keras.Model) -> list[tuple[str, str]]:
        return [(layer.name, type(layer).__name__) for layer in model.layers]

    assert layers(shipped) == layers(built)
    assert shipped.get_layer("normalization").get_config() == \
        built.get_layer("normalization").get_config()
