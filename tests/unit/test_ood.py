"""The out-of-distribution gate: its math on synthetic features, its files, its place in the
predictor and the CLI, and (when it is there) the shipped model's gate on real images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from skimage import data as skimage_data

from model.batch import classify
from model.decode import DecodedImage, decode_file, decode_image
from model.errors import ImageError
from model.image_looks import LOOKS, contrast, fit_ranges, unusual
from model.ood import (
    FeatureGaussians,
    OodGate,
    check_acquisition,
    distance_threshold,
    neighbour_correlation,
)
from model.predictor import ModelLoadError, Predictor
from model.preprocess import resize_gray
from model.run_dir import (
    MODEL_FILE,
    OOD_ARRAYS_FILE,
    OOD_FILE,
    GateSettings,
    OodLimits,
    RunFileError,
    read_metadata,
)
from testkit.model_factory import fit_synthetic_gate, make_run_dir, shipped_run_dir
from testkit.ood_corpus import encode, ood_corpus
from testkit.predict_cli import predict_cli
from testkit.synthetic_data import smooth_xray
from training.fit_ood import cross_validated_refusal, fit_gaussians, source_balanced_threshold
from webapp.analysis import analyse

REFUSED_PHOTO = "does not look like a frontal chest X-ray"


def photo() -> np.ndarray:
    """A natural photo as the decoder gives it (RGB to luminance)."""
    return decode_image(encode(skimage_data.astronaut(), "astronaut.png"), "astronaut.png").gray


# ---- the math, on synthetic features ----

def test_distance_is_euclidean_to_the_nearest_mean_for_identity_covariance():
    gaussians = FeatureGaussians.from_covariance(np.array([[0.0, 0.0], [10.0, 0.0]]), np.eye(2))
    np.testing.assert_allclose(gaussians.distances(np.array([[3.0, 4.0], [10.0, -2.0]])),
                               [5.0, 2.0], rtol=1e-6)


def test_distance_matches_the_mahalanobis_formula():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(6, 6))
    covariance = mixing @ mixing.T + 0.1 * np.eye(6)
    means = rng.normal(size=(3, 6))
    points = rng.normal(size=(20, 6)) * 3
    precision = np.linalg.inv(covariance)
    expected = np.min([np.sqrt(np.einsum("nd,de,ne->n", points - mean, precision, points - mean))
                       for mean in means], axis=0)
    np.testing.assert_allclose(FeatureGaussians.from_covariance(means, covariance)
                               .distances(points), expected, rtol=1e-4)


def test_a_singular_covariance_is_refused():
    with pytest.raises(ValueError, match="positive definite"):
        FeatureGaussians.from_covariance(np.zeros((1, 2)), np.array([[1.0, 1.0], [1.0, 1.0]]))


def test_threshold_refuses_at_most_the_fraction_and_no_lower_observed_value_would():
    distances = np.random.default_rng(1).permutation(np.arange(1.0, 201.0))
    limit = distance_threshold(distances, 0.01)
    assert limit == 198.0  # 199 and 200 are refused: 2 of 200
    assert np.mean(distances > limit) <= 0.01
    assert np.mean(distances > limit - 1) > 0.01
    assert distance_threshold(distances, 0.0) == 200.0
    with pytest.raises(ValueError):
        distance_threshold(distances, 1.0)


def test_fitted_gaussians_recover_the_true_distances():
    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(5, 5))
    covariance = mixing @ mixing.T + np.eye(5)
    means = np.array([np.zeros(5), np.full(5, 8.0)])
    labels = rng.integers(0, 2, 4000)
    features = means[labels] + rng.multivariate_normal(np.zeros(5), covariance, 4000)
    fitted, shrinkage = fit_gaussians(features, labels, 2)
    assert 0.0 <= shrinkage < 0.1  # plenty of data: little shrinkage
    probes = rng.normal(size=(50, 5)) * 4
    truth = FeatureGaussians.from_covariance(means, covariance).distances(probes)
    np.testing.assert_allclose(fitted.distances(probes), truth, rtol=0.1)


def test_cross_validated_refusal_is_near_the_target_on_exchangeable_distances():
    distances = np.random.default_rng(3).normal(size=4000)
    assert 0.03 < cross_validated_refusal(distances, ["one"] * 4000, 0.05) < 0.07


def test_the_limit_refuses_at_most_the_target_share_of_every_source():
    """A small source of unusual-looking films sets the limit, not the big sources' quantile:
    one limit over all val films refused most of its films."""
    rng = np.random.default_rng(4)
    distances = np.concatenate([rng.normal(30, 3, 950), rng.normal(45, 3, 50)])
    sources = ["archive"] * 950 + ["publications"] * 50
    pooled = distance_threshold(distances, 0.02)
    assert np.mean(distances[950:] > pooled) > 0.3
    limit = source_balanced_threshold(distances, sources, 0.02)
    for name in ("archive", "publications"):
        rows = np.array(sources) == name
        assert np.mean(distances[rows] > limit) <= 0.02


def test_sources_too_small_for_a_quantile_are_pooled():
    distances = np.array([1.0] * 40 + [9.0, 8.0, 2.0])
    sources = ["big"] * 40 + ["tiny-a", "tiny-b", "tiny-c"]
    # pooled, the three tiny sources' limit refuses floor(0.5 x 3) = 1 of them, not 0 of each
    assert source_balanced_threshold(distances, sources, 0.5) == 8.0


# ---- the pixel checks ----

def test_pixel_statistics_tell_radiographs_from_blank_and_noise():
    rng = np.random.default_rng(4)
    xray = resize_gray(smooth_xray(rng), 64)
    noise = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    assert contrast(np.full((64, 64), 90, np.uint8)) == 0.0
    assert contrast(xray) > 100
    assert abs(neighbour_correlation(noise)) < 0.1
    assert neighbour_correlation(xray) > 0.9
    assert neighbour_correlation(np.full((64, 64), 90, np.uint8)) == 1.0


def _gate(limit: float = 3.0, look_ranges: dict | None = None) -> OodGate:
    gaussians = FeatureGaussians.from_covariance(np.zeros((1, 3)), np.eye(3))
    return OodGate(gaussians, GateSettings(OodLimits(limit, 30.0, 0.5), {"method": "test"},
                                           look_ranges=look_ranges or {}))


def _xrays(count: int, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([resize_gray(smooth_xray(rng), 64) for _ in range(count)])


def test_gate_explains_each_refusal():
    gate = _gate()
    gate.check(np.array([1.0, 1.0, 1.0]))  # distance 1.73: accepted
    with pytest.raises(ImageError, match=r"distance 4\.0 .* limit 3\.0\)\. The model only"):
        gate.check(np.array([0.0, 4.0, 0.0]))
    with pytest.raises(ImageError, match="distance nan"):
        gate.check(np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(ImageError, match="blank or almost uniform"):
        gate.check_pixels(np.full((64, 64), 7, np.uint8))
    with pytest.raises(ImageError, match="looks like noise"):
        gate.check_pixels(np.random.default_rng(5).integers(0, 256, (64, 64)).astype(np.uint8))
    gate.check_pixels(resize_gray(smooth_xray(np.random.default_rng(6)), 64))


def test_a_refusal_names_what_looked_wrong():
    gate = _gate(look_ranges=fit_ranges(_xrays(100)))
    far = np.array([0.0, 4.0, 0.0])
    xray = _xrays(1, seed=12)[0]
    marked = xray.copy()
    marked[:32, :32] = 255
    expected = {"much darker overall": xray // 4,
                "pure white (burned-in text": marked,
                "Nothing simple explains it": xray}
    for words, image in expected.items():
        with pytest.raises(ImageError, match=r"limit 3\.0\)\. .*" + re.escape(words)):
            gate.check(far, image)
    gate.check(np.array([1.0, 1.0, 1.0]), xray // 4)  # the looks never refuse by themselves


def test_a_gate_without_look_ranges_refuses_as_before():
    with pytest.raises(ImageError, match=r"limit 3\.0\)\. The model only"):
        _gate().check(np.array([0.0, 4.0, 0.0]), 255 - _xrays(1)[0])


def test_look_ranges_round_trip_and_damaged_ones_are_a_load_error(tmp_path):
    ranges = fit_ranges(_xrays(50))
    _gate(look_ranges=ranges).save(tmp_path)
    assert OodGate.load(tmp_path).settings.look_ranges == ranges
    content = json.loads((tmp_path / OOD_FILE).read_text())
    content["look_ranges"]["brightness"]["low"] = "dark"
    (tmp_path / OOD_FILE).write_text(json.dumps(content))
    with pytest.raises(RunFileError, match="look_ranges.brightness.low"):
        OodGate.load(tmp_path)


def test_an_off_gate_lets_everything_through_and_says_why(tmp_path):
    gate = OodGate.load(tmp_path)
    assert not gate.enabled
    assert OOD_FILE in gate.info["reason"]
    gate.check(np.full(3, 1e9))
    gate.check_pixels(np.zeros((64, 64), np.uint8))


def test_gate_files_round_trip(tmp_path):
    _gate().save(tmp_path)
    loaded = OodGate.load(tmp_path)
    assert loaded.enabled and loaded.info["method"] == "test"
    assert loaded.info["limits"] == {"max_distance": 3.0, "min_contrast": 30.0,
                                     "min_neighbour_correlation": 0.5}
    probes = np.random.default_rng(7).normal(size=(5, 3))
    np.testing.assert_allclose(loaded.distances(probes), _gate().distances(probes), rtol=1e-6)


def test_damaged_gate_files_are_a_load_error(tmp_path):
    _gate().save(tmp_path)
    (tmp_path / OOD_ARRAYS_FILE).write_bytes(b"not an npz")
    with pytest.raises(RunFileError, match=f"{OOD_ARRAYS_FILE} cannot be loaded"):
        OodGate.load(tmp_path)


# ---- DICOM headers ----

def test_dicom_of_another_modality_is_refused_by_name():
    with pytest.raises(ImageError, match=r"CT \(computed tomography\) image, not a radiograph"):
        check_acquisition(decode_file(get_testdata_file("CT_small.dcm")))
    with pytest.raises(ImageError, match="MR"):
        check_acquisition(decode_file(get_testdata_file("MR_small.dcm")))
    gray = np.zeros((40, 40), np.uint8)
    check_acquisition(DecodedImage(gray, "DICOM", {"Modality": "CR"}))
    check_acquisition(DecodedImage(gray, "DICOM", {"Modality": "DX"}))
    check_acquisition(DecodedImage(gray, "PNG", {}))


# ---- in the predictor and the CLI, on a small real model ----

@pytest.fixture(scope="module")
def gated_run_dir(tmp_path_factory) -> Path:
    """The factory model with a gate fitted by fit_gate on synthetic radiographs."""
    return fit_synthetic_gate(make_run_dir(tmp_path_factory.mktemp("gated")))


@pytest.fixture(scope="module")
def gated(gated_run_dir) -> Predictor:
    return Predictor.load(gated_run_dir)


def test_fitted_gate_records_its_figures(gated):
    info = gated.ood.info
    assert gated.ood.enabled
    assert info["fitted_on"] == {"train": 200, "val": 100}
    assert info["val_refused_fraction"] <= 0.01
    assert info["limits"]["max_distance"] == pytest.approx(info["distances"]["val"]["q99"],
                                                           rel=0.2)
    assert info["pixels"]["train_min_contrast"] * 0.5 == info["limits"]["min_contrast"]
    assert set(gated.ood.settings.look_ranges) == set(LOOKS)


def test_one_forward_pass_gives_the_head_pool_features(gated, gated_run_dir):
    import keras

    model = keras.saving.load_model(gated_run_dir / MODEL_FILE, compile=False)
    pooled = keras.Model(model.inputs[0], model.get_layer("head_pool").output)
    batch = np.stack([gated.preprocess(smooth_xray(np.random.default_rng(9)))])
    logits, features = gated.logits_and_features(batch)
    np.testing.assert_allclose(features, np.asarray(pooled(batch)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, gated.logits(batch), rtol=1e-6)


def test_predictor_refuses_a_photo_and_accepts_a_radiograph(gated):
    xray = smooth_xray(np.random.default_rng(10))
    assert sum(gated.predict(xray).values()) == pytest.approx(1.0)
    with pytest.raises(ImageError, match=REFUSED_PHOTO):
        gated.predict(photo())
    with pytest.raises(ImageError, match=REFUSED_PHOTO):
        gated.explain(photo())
    assert gated.explain(xray).heatmap.shape == xray.shape
    predictions = gated.classify([gated.admit(image) for image in (xray, photo(), xray)])
    assert [prediction.refusal is None for prediction in predictions] == [True, False, True]
    assert REFUSED_PHOTO in predictions[1].refusal
    assert re.search("Unlike the training X-rays|Nothing simple explains it",
                     predictions[1].refusal)
    with pytest.raises(ImageError, match="This image is blank"):
        gated.admit(np.zeros((50, 50), np.uint8))
    gated.warm_up()  # on a blank image, straight through the graph


def test_a_run_without_gate_files_is_ungated_and_says_so(tmp_path):
    predictor = Predictor.load(make_run_dir(tmp_path / "run"))
    assert not predictor.ood.enabled
    assert "fit_ood" in predictor.ood.info["reason"]
    assert sum(predictor.predict(photo()).values()) == pytest.approx(1.0)


def test_the_predictor_checks_the_dicom_header_gate_or_not(tmp_path):
    ungated = Predictor.load(make_run_dir(tmp_path / "run"))
    ct = decode_file(get_testdata_file("CT_small.dcm"))
    for refuse in (ungated.admit, ungated.predict, ungated.explain):
        with pytest.raises(ImageError, match=r"CT \(computed tomography\) image"):
            refuse(ct)
    assert sum(ungated.predict(ct.gray).values()) == pytest.approx(1.0)  # no header to check


def test_gate_fitted_on_other_features_is_a_load_error(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    OodGate(FeatureGaussians.from_covariance(np.zeros((4, 7)), np.eye(7)),
            GateSettings(OodLimits(1.0, 1.0, 0.1), {})).save(run_dir)
    with pytest.raises(ModelLoadError, match="fitted on 7 features"):
        Predictor.load(run_dir)


def _cli_records(run_dir: Path, files: dict[str, Path]) -> dict[str, dict]:
    result = predict_cli(*files.values(), "--model", run_dir)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return dict(zip(files, records, strict=True))


def test_cli_and_app_refuse_each_non_radiograph_with_the_same_reason(
    gated, gated_run_dir, tmp_path
):
    files = {"photo": tmp_path / "astronaut.jpg", "xray": tmp_path / "xray.png",
             "ct": Path(get_testdata_file("CT_small.dcm")), "blank": tmp_path / "blank.png"}
    Image.fromarray(skimage_data.astronaut()).save(files["photo"])
    Image.fromarray(smooth_xray(np.random.default_rng(11))).save(files["xray"])
    Image.fromarray(np.full((80, 80), 200, np.uint8)).save(files["blank"])
    records = _cli_records(gated_run_dir, files)
    assert REFUSED_PHOTO in records["photo"]["error"]
    assert "CT (computed tomography)" in records["ct"]["error"]
    assert "blank" in records["blank"]["error"]
    assert "error" not in records["xray"] and records["xray"]["label"]
    for key in ("photo", "ct", "blank"):
        with pytest.raises(ImageError) as app_refusal:
            analyse(files[key].read_bytes(), files[key].name, gated)
        assert str(app_refusal.value) == records[key]["error"]
    assert analyse(files["xray"].read_bytes(), "xray.png", gated).probabilities == (
        pytest.approx(records["xray"]["probabilities"], abs=1e-5))


# ---- the shipped model's gate on real images ----

@pytest.fixture(scope="module")
def shipped_dir() -> Path:
    run_dir = shipped_run_dir()
    if not (run_dir / OOD_FILE).is_file():
        pytest.skip(f"the shipped model has no gate yet: run python -m training.fit_ood "
                    f"--model {run_dir} --data DIR")
    return run_dir


@pytest.fixture(scope="module")
def shipped(shipped_dir) -> Predictor:
    return Predictor.load(shipped_dir)


def test_corpus_has_enough_varied_non_radiographs():
    corpus = ood_corpus()
    assert len(corpus) >= 200
    assert len({sample.name for sample in corpus}) == len(corpus)
    assert {sample.category for sample in corpus} >= {"photo", "medical", "document",
                                                      "screenshot", "noise", "blank",
                                                      "gradient"}
    for sample in corpus:
        decode_image(sample.data, sample.name)  # every one reaches the gate


def _refused_share(predictor: Predictor, items: list, load) -> float:
    """The share of ``items`` the predictor refuses, on the batch path the CLI takes."""
    return float(np.mean([outcome.prediction.refusal is not None
                          for outcome in classify(items, load, predictor)]))


def test_shipped_gate_refuses_the_non_radiograph_corpus(shipped):
    assert _refused_share(shipped, ood_corpus(),
                          lambda sample: decode_image(sample.data, sample.name)) >= 0.98


def test_shipped_gate_accepts_the_val_radiographs(shipped, cxr4_dir):
    assert _refused_share(shipped, sorted((cxr4_dir / "val").rglob("*.jpg")), decode_file) <= 0.01


def test_on_real_films_an_inverted_or_framed_film_is_named_and_a_plain_one_is_not(cxr4_dir):
    """Ranges from real X-rays: an inverted film is named by its layout, one shrunk into a
    black frame (a photographed screen) by its black share, and most real films by nothing."""
    files = sorted((cxr4_dir / "val").rglob("*.jpg"))
    films = np.stack([resize_gray(decode_file(path).gray, 224) for path in files[::3]])
    ranges = fit_ranges(films[::2])
    held_out = films[1::2]
    assert np.mean([bool(unusual(film, ranges)) for film in held_out]) <= 0.1
    inverted = [unusual(255 - film, ranges) for film in held_out[:40]]
    assert np.mean([any("middle is not brighter" in words for words in found)
                    for found in inverted]) >= 0.8
    framed = np.zeros_like(held_out[0])
    framed[56:168, 56:168] = resize_gray(held_out[0], 112)
    assert "a large part of it is black" in " ".join(unusual(framed, ranges))


def test_shipped_cli_refuses_a_photo_and_passes_a_real_xray(shipped_dir, cxr4_dir, tmp_path):
    files = {"photo": tmp_path / "chelsea.jpg",
             "xray": next((cxr4_dir / "val" / "NORMAL").glob("*.jpg"))}
    Image.fromarray(skimage_data.chelsea()).save(files["photo"])
    records = _cli_records(shipped_dir, files)
    assert REFUSED_PHOTO in records["photo"]["error"]
    assert records["xray"]["label"] in read_metadata(shipped_dir).classes
