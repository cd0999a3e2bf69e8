"""The predictor: loading a run directory, calibrated probabilities, clear load errors."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest

from model.decode import decode_file
from model.errors import ImageError
from model.labels import CLASS_NAMES
from model.prediction import Prediction
from model.predictor import ModelLoadError, Predictor
from model.preprocess import resize_gray
from model.run_dir import (
    CALIBRATION_FILE,
    METADATA_FILE,
    MODEL_FILE,
    Preprocessing,
    read_calibration,
    read_json,
    read_metadata,
    write_calibration,
    write_json,
    write_metadata,
)
from testkit.model_factory import TEMPERATURE, make_run_dir, shipped_run_dir
from testkit.synthetic_data import synthetic_xray


@pytest.fixture(scope="module")
def run_dir(factory_model_dir):
    return factory_model_dir


@pytest.fixture(scope="module")
def predictor(run_dir) -> Predictor:
    return Predictor.load(run_dir)


@pytest.fixture(scope="module")
def grays() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [synthetic_xray(label, rng, size)
            for label, size in enumerate([(90, 120), (64, 64), (300, 200), (500, 410)])]


def _numpy_softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _classified(predictor, grays) -> np.ndarray:
    """(N, C) calibrated probabilities of images ``classify`` accepts, in class order."""
    predictions = predictor.classify([predictor.admit(gray) for gray in grays])
    return np.array([list(prediction.probabilities.values()) for prediction in predictions])


def _keras_outputs(run_dir, predictor, grays) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) of the saved model called plainly through Keras."""
    model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    both = keras.Model(model.input, [model.get_layer("logits").output, model.output])
    logits, probabilities = both(np.stack([predictor.preprocess(gray) for gray in grays]))
    return np.asarray(logits), np.asarray(probabilities)


def test_load_reads_metadata_and_temperature(predictor):
    assert predictor.classes == list(CLASS_NAMES)
    assert predictor.version == "test-model-1"
    assert predictor.image_size == 64
    assert predictor.temperature == TEMPERATURE
    assert predictor.metadata.gradcam_layer == "top_activation"


def test_preprocess_gives_the_stretched_grey_image_the_model_takes(predictor, grays):
    inputs = predictor.preprocess(grays[2])
    assert inputs.shape == (64, 64) and inputs.dtype == np.uint8
    np.testing.assert_array_equal(inputs, resize_gray(grays[2], 64))


def test_the_model_normalises_its_input_itself(run_dir, predictor, grays):
    """The factory's model applies the "tf" normalisation (to [-1, 1]) in its first layer."""
    model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    first = keras.Model(model.input, model.get_layer("normalization").output)
    rgb = np.asarray(first(predictor.preprocess(grays[2])[None]))[0]
    expected = predictor.preprocess(grays[2]).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(rgb, np.repeat(expected[..., None], 3, axis=-1))


def test_logits_match_the_keras_model(run_dir, predictor, grays):
    keras_logits, _ = _keras_outputs(run_dir, predictor, grays)
    batch = np.stack([predictor.preprocess(gray) for gray in grays])
    np.testing.assert_allclose(predictor.logits(batch), keras_logits, rtol=1e-5, atol=1e-5)


def test_probabilities_apply_the_temperature(run_dir, predictor, grays):
    keras_logits, keras_probabilities = _keras_outputs(run_dir, predictor, grays)
    calibrated = _classified(predictor, grays)
    np.testing.assert_allclose(calibrated, _numpy_softmax(keras_logits / TEMPERATURE),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(calibrated, keras_probabilities, atol=1e-4)  # T != 1 did something


def test_without_calibration_the_temperature_is_one(tmp_path, grays):
    run_dir = make_run_dir(tmp_path / "run", temperature=None)
    uncalibrated = Predictor.load(run_dir)
    assert uncalibrated.temperature == 1.0
    _, keras_probabilities = _keras_outputs(run_dir, uncalibrated, grays)
    np.testing.assert_allclose(_classified(uncalibrated, grays), keras_probabilities,
                               rtol=1e-5, atol=1e-6)


def test_predict_gives_probabilities_by_class_in_order(predictor, grays):
    probabilities = predictor.predict(grays[3])
    assert list(probabilities) == list(CLASS_NAMES)
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(list(probabilities.values()), _classified(predictor, grays)[3],
                               atol=1e-6)


def test_classify_gives_one_prediction_per_image_with_refusals_given_in_place(predictor, grays):
    refusal = ImageError("This image is blank.")
    predictions = predictor.classify([predictor.admit(grays[0]), refusal,
                                      predictor.admit(grays[2])])
    assert [prediction.refusal for prediction in predictions] == [None, str(refusal), None]
    assert {prediction.model_version for prediction in predictions} == {"test-model-1"}
    for prediction, gray in zip(predictions[::2], grays[::2], strict=True):
        assert prediction.probabilities == pytest.approx(predictor.predict(gray), abs=1e-6)
        assert prediction.label == max(prediction.probabilities,
                                       key=prediction.probabilities.get)
    assert predictor.classify([refusal]) == [Prediction.refused(str(refusal), "test-model-1")]
    assert predictor.classify([]) == []


def test_predict_refuses_a_colour_array(predictor):
    with pytest.raises(ValueError, match="2-D uint8"):
        predictor.predict(np.zeros((40, 40, 3), np.uint8))


def test_warm_up_traces_the_one_graph_that_every_prediction_reuses(run_dir, grays):
    fresh = Predictor.load(run_dir)
    graph = fresh._forward
    assert graph.experimental_get_tracing_count() == 0
    fresh.warm_up()
    assert graph.experimental_get_tracing_count() == 1
    fresh.predict(grays[0])
    fresh.classify([fresh.admit(gray) for gray in grays])
    fresh.explain(grays[1], CLASS_NAMES[3])
    fresh.logits(np.stack([fresh.preprocess(gray) for gray in grays]))
    assert graph.experimental_get_tracing_count() == 1


def test_missing_folder_is_a_clear_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no model directory"):
        Predictor.load(tmp_path / "nowhere")


@pytest.mark.parametrize("missing", [MODEL_FILE, METADATA_FILE])
def test_missing_file_is_named(tmp_path, missing):
    run_dir = make_run_dir(tmp_path / "run")
    (run_dir / missing).unlink()
    with pytest.raises(ModelLoadError, match=f"{missing} is missing"):
        Predictor.load(run_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gradcam_layer": "no_such_layer"}, "no layer 'no_such_layer'"),
        ({"image_size": 96}, "the metadata says"),
        ({"classes": ("A", "B")}, "4 outputs for 2 classes"),
        ({"preprocessing": Preprocessing(normalization="imagenet?")}, "unknown preprocessing"),
    ],
)
def test_metadata_that_does_not_fit_the_model_is_refused(tmp_path, change, message):
    run_dir = make_run_dir(tmp_path / "run")
    write_metadata(run_dir, replace(read_metadata(run_dir), **change))
    with pytest.raises(ModelLoadError, match=message):
        Predictor.load(run_dir)


def test_metadata_missing_a_key_is_named(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    content = read_json(run_dir / METADATA_FILE)
    del content["gradcam_layer"]
    write_json(run_dir / METADATA_FILE, content)
    with pytest.raises(ModelLoadError, match="lacks gradcam_layer"):
        Predictor.load(run_dir)


def test_a_calibration_that_is_not_positive_is_refused(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    write_calibration(run_dir, replace(read_calibration(run_dir), temperature=0.0))
    with pytest.raises(ModelLoadError, match=f"{CALIBRATION_FILE}: the temperature must be"):
        Predictor.load(run_dir)


@pytest.mark.parametrize("calibration", ['{"ece": 1}', "not json"])
def test_unusable_calibration_is_refused(tmp_path, calibration):
    run_dir = make_run_dir(tmp_path / "run")
    (run_dir / CALIBRATION_FILE).write_text(calibration)
    with pytest.raises(ModelLoadError, match=CALIBRATION_FILE):
        Predictor.load(run_dir)


def test_shipped_model_predicts_a_real_xray(cxr4_dir):
    shipped = Predictor.load(shipped_run_dir())
    assert shipped.classes == list(CLASS_NAMES)
    gray = decode_file(next((cxr4_dir / "val" / "NORMAL").glob("*.jpg"))).gray
    probabilities = shipped.predict(gray)
    assert list(probabilities) == list(CLASS_NAMES)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
