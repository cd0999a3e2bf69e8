"""Grad-CAM: the math, the heatmap at the original size, the flat-gradient case, the overlay."""

from __future__ import annotations

import numpy as np
import pytest

from model.decode import decode_file
from model.gradcam import gradcam_heatmap
from model.labels import CLASS_NAMES
from model.overlay import overlay
from model.predictor import Predictor
from testkit.model_factory import make_run_dir, shipped_run_dir
from testkit.synthetic_data import synthetic_xray

ORIGINAL_SHAPE = (300, 200)  # (H, W): not square, not the model's size


@pytest.fixture(scope="module")
def predictor(factory_predictor) -> Predictor:
    return factory_predictor


@pytest.fixture(scope="module")
def xray() -> np.ndarray:
    return synthetic_xray(1, np.random.default_rng(3), ORIGINAL_SHAPE)


def _assert_valid_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> None:
    assert heatmap.shape == shape
    assert heatmap.dtype == np.float32
    assert not np.isnan(heatmap).any()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0


def test_math_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    activations = rng.random((5, 6, 7)).astype(np.float32)
    gradients = rng.normal(size=(5, 6, 7)).astype(np.float32)
    expected = np.maximum((activations * gradients.mean(axis=(0, 1))).sum(axis=-1), 0)
    expected /= expected.max()
    np.testing.assert_allclose(gradcam_heatmap(activations, gradients).numpy(), expected,
                               rtol=1e-5, atol=1e-6)


def test_math_gives_zeros_not_nan_for_a_flat_gradient():
    activations = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    heatmap = gradcam_heatmap(activations, np.zeros_like(activations)).numpy()
    assert not np.isnan(heatmap).any()
    assert (heatmap == 0).all()


def test_heatmap_is_at_the_original_size_in_range(predictor, xray):
    explanation = predictor.explain(xray)
    _assert_valid_heatmap(explanation.heatmap, ORIGINAL_SHAPE)
    assert explanation.heatmap.max() > 0


def test_heatmap_changes_with_the_class(predictor, xray):
    heatmaps = [predictor.explain(xray, name).heatmap for name in CLASS_NAMES]
    assert [predictor.explain(xray, name).class_name for name in CLASS_NAMES] == list(CLASS_NAMES)
    assert any(not np.allclose(heatmaps[0], other) for other in heatmaps[1:])


def test_default_class_is_the_predicted_one(predictor, xray):
    explanation = predictor.explain(xray)
    probabilities = explanation.prediction.probabilities
    assert explanation.class_name == max(probabilities, key=probabilities.get)
    assert explanation.prediction.label == explanation.class_name


@pytest.mark.parametrize("class_name", [None, CLASS_NAMES[2]])
def test_explain_and_predict_give_the_same_probabilities_from_one_graph(
    predictor, xray, class_name
):
    explained = predictor.explain(xray, class_name).prediction.probabilities
    predicted = predictor.predict(xray)
    assert list(explained) == list(predicted)
    np.testing.assert_allclose(list(explained.values()), list(predicted.values()),
                               rtol=0, atol=1e-6)


def test_unknown_class_is_refused(predictor, xray):
    with pytest.raises(ValueError, match="unknown class"):
        predictor.explain(xray, "PNEUMOTHORAX")


def test_flat_gradient_gives_a_zero_heatmap(tmp_path, xray):
    flat = Predictor.load(make_run_dir(tmp_path / "flat", zero_logits=True))
    heatmap = flat.explain(xray, CLASS_NAMES[3]).heatmap
    _assert_valid_heatmap(heatmap, ORIGINAL_SHAPE)
    assert (heatmap == 0).all()


def test_constant_image_gives_a_valid_heatmap(predictor):
    _assert_valid_heatmap(predictor.explain(np.full((50, 80), 7, np.uint8)).heatmap, (50, 80))


def test_overlay_is_rgb_uint8_at_the_original_size(xray):
    heatmap = np.linspace(0, 1, xray.size, dtype=np.float32).reshape(xray.shape)
    blended = overlay(xray, heatmap, opacity=0.5)
    assert blended.shape == (*xray.shape, 3)
    assert blended.dtype == np.uint8


def test_overlay_opacity_zero_is_the_xray_alone(xray):
    heatmap = np.ones(xray.shape, np.float32)
    np.testing.assert_array_equal(overlay(xray, heatmap, opacity=0.0),
                                  np.stack([xray] * 3, axis=-1))


def test_overlay_colours_are_rgb_hot_red_cold_blue(xray):
    hot = overlay(xray, np.ones(xray.shape, np.float32), opacity=1.0)
    cold = overlay(xray, np.zeros(xray.shape, np.float32), opacity=1.0)
    assert hot[..., 0].mean() > hot[..., 2].mean()
    assert cold[..., 2].mean() > cold[..., 0].mean()


@pytest.mark.parametrize("opacity", [-0.1, 1.5])
def test_overlay_refuses_an_opacity_outside_0_1(xray, opacity):
    with pytest.raises(ValueError, match="opacity"):
        overlay(xray, np.zeros(xray.shape, np.float32), opacity)


def test_overlay_refuses_a_heatmap_of_another_size(xray):
    with pytest.raises(ValueError, match="must match"):
        overlay(xray, np.zeros((64, 64), np.float32))


def test_shipped_model_gradcam_on_a_real_xray(cxr4_dir):
    run_dir = shipped_run_dir()
    shipped = Predictor.load(run_dir)
    gray = decode_file(next((cxr4_dir / "val" / "BACTERIAL_PNEUMONIA").glob("*.jpg"))).gray
    heatmaps = [shipped.explain(gray, name).heatmap for name in shipped.classes]
    for heatmap in heatmaps:
        _assert_valid_heatmap(heatmap, gray.shape)
    assert any(not np.allclose(heatmaps[0], other, atol=1e-3) for other in heatmaps[1:])


def test_hirescam_matches_a_numpy_reference_and_grad_cam_under_a_pooled_head():
    from model.gradcam import CAM_METHODS

    rng = np.random.default_rng(1)
    activations = rng.random((5, 6, 7)).astype(np.float32)
    gradients = rng.normal(size=(5, 6, 7)).astype(np.float32)
    expected = np.maximum((activations * gradients).sum(axis=-1), 0)
    expected /= expected.max()
    np.testing.assert_allclose(CAM_METHODS["hirescam"](activations, gradients).numpy(),
                               expected, rtol=1e-5, atol=1e-6)
    # Behind global average pooling and a dense layer the gradient is the same at every
    # position: HiResCAM is then Grad-CAM (Draelos & Carin 2020).
    constant = np.broadcast_to(gradients.mean(axis=(0, 1)), gradients.shape)
    np.testing.assert_allclose(CAM_METHODS["hirescam"](activations, constant).numpy(),
                               gradcam_heatmap(activations, constant).numpy(), atol=1e-6)


@pytest.mark.parametrize("method", ["hirescam", "gradcam++", "layercam"])
def test_every_method_gives_zeros_not_nan_for_a_flat_gradient(method):
    from model.gradcam import CAM_METHODS

    activations = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    heatmap = CAM_METHODS[method](activations, np.zeros_like(activations)).numpy()
    assert not np.isnan(heatmap).any() and (heatmap == 0).all()
