"""A small but real run directory for tests: a flat Keras model saved in the shipped format."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from model.labels import CLASS_NAMES
from model.normalization import normalization_layer
from model.predictor import DEFAULT_RUN_DIR, Predictor
from model.preprocess import resize_gray
from model.run_dir import (
    MODEL_FILE,
    Calibration,
    Metadata,
    Preprocessing,
    write_calibration,
    write_metadata,
)
from testkit.synthetic_data import smooth_xray
from training.data import LoadedSplit
from training.fit_ood import fit_gate

IMAGE_SIZE = 64
TEMPERATURE = 1.7
GRADCAM_LAYER = "top_activation"
NORMALIZATION = "tf"


def build_model(image_size: int = IMAGE_SIZE, seed: int = 0,
                normalization: str | None = NORMALIZATION, n_groups: int = 1) -> keras.Model:
    """The grey image, its normalisation, two conv blocks, pool, `logits` Dense and
    `probabilities` softmax; random weights. ``normalization=None`` gives the format-1 model,
    which took normalised RGB, for the conversion's tests; ``n_groups`` blocks of class
    logits, one per age head (model.populations)."""
    keras.utils.set_random_seed(seed)
    if normalization is None:
        inputs = x = keras.Input((image_size, image_size, 3), name="image")
    else:
        inputs = keras.Input((image_size, image_size), dtype="uint8", name="image")
        x = normalization_layer(normalization)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(x)
    x = keras.layers.Activation("relu", name="conv1_activation")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.Activation("relu", name=GRADCAM_LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    logits = keras.layers.Dense(len(CLASS_NAMES) * n_groups, name="logits")(x)
    probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="cxr_test")


def metadata(image_size: int = IMAGE_SIZE, age_heads: list[str] | None = None) -> Metadata:
    """The factory model's metadata: no label sets, populations or data roots recorded."""
    return Metadata(
        age_heads=age_heads,
        version="test-model-1",
        classes=CLASS_NAMES,
        image_size=image_size,
        preprocessing=Preprocessing(normalization=NORMALIZATION),
        backbone="tiny_cnn",
        weights_source="random",
        gradcam_layer=GRADCAM_LAYER,
        logits_layer="logits",
        dataset={"train": {}, "val": {}},
        seed=0,
        config={},
        software={"keras": keras.__version__},
        training_seconds=0.0,
        created_at="2025-01-01T00:00:00+00:00",
        git_commit="unknown",
    )


def make_run_dir(
    run_dir: Path, temperature: float | None = TEMPERATURE, zero_logits: bool = False,
    age_heads: list[str] | None = None,
) -> Path:
    """Write the model, its metadata and (unless temperature is None) its calibration.

    zero_logits sets the logits layer's weights to zero, so every gradient on the Grad-CAM
    path is zero: the flat-gradient case.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(n_groups=max(1, len(age_heads or [])))
    if zero_logits:
        layer = model.get_layer("logits")
        layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])
    model.save(run_dir / MODEL_FILE)
    write_metadata(run_dir, metadata(age_heads=age_heads))
    if temperature is not None:
        write_calibration(run_dir, Calibration(temperature=temperature, ece_before=0.1,
                                               ece_after=0.05, bins_before=(), bins_after=()))
    return run_dir


def fit_synthetic_gate(run_dir: Path, seed: int = 8) -> Path:
    """Fit the out-of-distribution gate (training.fit_ood) of a run on synthetic radiographs."""
    rng = np.random.default_rng(seed)

    def split(count: int) -> LoadedSplit:
        images = np.stack([resize_gray(smooth_xray(rng), IMAGE_SIZE) for _ in range(count)])
        return LoadedSplit(images, np.arange(count) % 4, [Path(f"x{i}.png") for i in range(count)])

    predictor = Predictor.load(run_dir)
    fit_gate(predictor, split(200), split(100), refused_fraction=0.01).save(run_dir)
    return run_dir


def shipped_run_dir() -> Path:
    """The shipped model's run directory; skips the calling test while it has not been trained."""
    if not (DEFAULT_RUN_DIR / MODEL_FILE).is_file():
        pytest.skip(f"the shipped model is not there yet ({DEFAULT_RUN_DIR / MODEL_FILE})")
    return DEFAULT_RUN_DIR
