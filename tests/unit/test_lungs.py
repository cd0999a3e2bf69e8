"""The lung segmenter: its artifact, its masks, and the share of heat inside the lungs."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from model.decode import decode_file
from model.lung_fields import (
    LungMask,
    dice,
    heat_in_lungs,
    in_words,
    mask_from_probabilities,
    share,
)
from model.lungs import (
    DEFAULT_LUNGS_DIR,
    LungSegmenter,
    read_lungs_metadata,
    read_lungs_metrics,
)
from training.config import SHARED_DATA
from training.lung_augment import LungAugmentConfig, augment_pair
from training.lung_segmenter import build_lung_segmenter

LUNGS_DATA = SHARED_DATA / "lungs"


def two_lungs(size: int = 64) -> np.ndarray:
    square = np.zeros((size, size), bool)
    square[10:50, 8:28] = True
    square[10:50, 36:56] = True
    return square


def test_the_two_largest_regions_are_kept_and_specks_dropped():
    probabilities = two_lungs().astype(np.float32)
    probabilities[0:2, 0:2] = 0.9  # a speck in the corner
    probabilities[60:63, 60:63] = 0.9  # a third region, tiny next to the lungs
    mask = mask_from_probabilities(probabilities)
    assert np.array_equal(mask.square, two_lungs())


def test_heat_share_is_the_heat_inside_over_all_heat():
    lungs = LungMask(two_lungs())
    inside = two_lungs().astype(np.float32)
    assert heat_in_lungs(inside, lungs) == pytest.approx(1.0)
    assert heat_in_lungs(1.0 - inside, lungs) == pytest.approx(0.0)
    uniform = np.ones((8, 8), np.float32)  # another resolution: brought to the mask's
    assert heat_in_lungs(uniform, lungs) == pytest.approx(lungs.fraction, abs=1e-6)
    assert heat_in_lungs(np.zeros((8, 8), np.float32), lungs) is None


def test_no_lung_field_gives_no_share_and_a_plain_message():
    nothing = LungMask(np.zeros((64, 64), bool))
    attention = share(nothing, np.ones((7, 7), np.float32), "NORMAL")
    assert not nothing.found and attention.heat_in_lungs is None and not attention.low
    assert "No lung field was found" in in_words(attention)
    found = share(LungMask(two_lungs()), np.ones((7, 7), np.float32), "NORMAL")
    assert found.low and in_words(found) == (
        f"{found.heat_in_lungs:.0%} of the model's attention was inside the lungs.")


def test_a_mask_goes_back_to_the_image_size_as_0_and_255():
    levels = LungMask(two_lungs()).png_levels((300, 200))
    assert levels.shape == (300, 200) and set(np.unique(levels)) == {0, 255}
    assert (levels == 255).mean() == pytest.approx(two_lungs().mean(), abs=0.02)


def test_augmentation_moves_film_and_mask_together():
    """A film that is its own mask must stay its mask through the geometry."""
    size = 96
    mask = np.zeros((size, size), np.float32)
    mask[20:70, 15:40] = 1.0
    film = (mask * 255).astype(np.uint8)
    rng = np.random.default_rng(3)
    geometry_only = LungAugmentConfig(gamma=0.0, contrast=0.0, brightness=0.0, noise=0.0,
                                      text_probability=0.0, border=0.0, min_resolution=1.0)
    for _ in range(5):
        image, warped = augment_pair(film, mask, rng, geometry_only)
        assert image.dtype == np.uint8 and warped.shape == (size, size)
        assert not np.array_equal(warped, mask)  # it did move
        assert np.abs(image / 255.0 - warped).mean() < 0.02


def test_the_network_maps_a_grey_square_to_a_probability_per_pixel():
    model = build_lung_segmenter(64, weights="none")
    output = model(np.zeros((2, 64, 64), np.uint8)).numpy()
    assert output.shape == (2, 64, 64) and 0.0 <= output.min() <= output.max() <= 1.0


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    if not (DEFAULT_LUNGS_DIR / "model.keras").is_file():
        pytest.fail(f"the lung segmenter is not shipped in {DEFAULT_LUNGS_DIR}")
    return LungSegmenter.load()


def test_the_shipped_segmenter_is_small_and_documents_itself(segmenter):
    size = sum(path.stat().st_size for path in DEFAULT_LUNGS_DIR.iterdir() if path.is_file())
    assert size <= 10e6
    metadata = read_lungs_metadata(DEFAULT_LUNGS_DIR)
    assert not set(metadata.train_files) & set(metadata.val_files)
    metrics = read_lungs_metrics(DEFAULT_LUNGS_DIR)
    assert metrics["n"] == len(metadata.val_files) == len(metrics["per_film"])
    assert metrics["dice_mean"] >= 0.92
    assert (DEFAULT_LUNGS_DIR / "history.json").is_file()


def test_the_shipped_segmenter_finds_the_lungs_of_held_out_films(segmenter):
    if not (LUNGS_DATA / "manifest.csv").is_file():
        pytest.skip(f"the lung-mask films are not at {LUNGS_DATA}")
    with open(LUNGS_DATA / "manifest.csv", newline="") as file:
        mask_of = {row["image"]: row["mask"] for row in csv.DictReader(file)}
    for name in read_lungs_metadata(DEFAULT_LUNGS_DIR).val_files[:5]:
        gray = decode_file(LUNGS_DATA / name).gray
        truth = cv2.imread(str(LUNGS_DATA / mask_of[name]), cv2.IMREAD_GRAYSCALE) > 127
        lungs = segmenter.segment(gray)
        assert lungs.found and dice(truth, lungs.at_size(gray.shape)) >= 0.9


def test_a_flat_image_has_no_lung_field(segmenter):
    for level in (0, 128, 255):
        assert not segmenter.segment(np.full((300, 300), level, np.uint8)).found
