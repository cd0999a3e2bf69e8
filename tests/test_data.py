"""The training data: class folders, patient-grouped splits, class weights, bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from model.labels import CLASS_NAMES
from tests.synthetic_data import make_dataset
from training.data import (
    DatasetError,
    class_weights,
    find_classes,
    limit_per_class,
    load_split,
    scan_split,
    split_by_patient,
)


@pytest.fixture()
def dataset(tmp_path):
    return make_dataset(tmp_path / "data", per_class=10, with_val=False)


def test_classes_follow_the_product_order(dataset):
    assert find_classes(dataset / "train") == list(CLASS_NAMES)


def test_patient_ids_come_from_the_manifest(dataset):
    samples = scan_split(dataset, "train", list(CLASS_NAMES))
    assert len(samples) == 40
    assert samples[0].patient_id == samples[1].patient_id == "train-NORMAL-0"


def test_split_by_patient_keeps_each_patient_on_one_side(dataset):
    samples = scan_split(dataset, "train", list(CLASS_NAMES))
    train, val = split_by_patient(samples, val_fraction=0.3, seed=1)
    assert {s.patient_id for s in train}.isdisjoint({s.patient_id for s in val})
    assert len(train) + len(val) == len(samples)
    assert {s.label for s in val} == {0, 1, 2, 3}, "each class is represented in val"
    assert 0.2 <= len(val) / len(samples) <= 0.45


def test_split_by_patient_on_the_real_manifest(cxr4_dir):
    samples = scan_split(cxr4_dir, "train", list(CLASS_NAMES))
    train, val = split_by_patient(samples, val_fraction=0.15, seed=1337)
    assert {s.patient_id for s in train}.isdisjoint({s.patient_id for s in val})
    assert 0.12 <= len(val) / len(samples) <= 0.18


def test_split_is_reproducible(dataset):
    samples = scan_split(dataset, "train", list(CLASS_NAMES))
    assert split_by_patient(samples, 0.3, seed=7) == split_by_patient(samples, 0.3, seed=7)


def test_empty_class_folder_is_a_clear_error(dataset):
    for path in (dataset / "train" / "COVID19").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="COVID19"):
        scan_split(dataset, "train", list(CLASS_NAMES))


def test_unreadable_images_are_skipped_by_name(dataset, caplog):
    broken = dataset / "train" / "NORMAL" / "broken.png"
    broken.write_bytes(b"not a png at all")
    samples = scan_split(dataset, "train", list(CLASS_NAMES))
    with caplog.at_level(logging.WARNING):
        loaded = load_split(samples, 32, "train")
    assert len(loaded.labels) == len(samples) - 1
    assert "broken.png" in caplog.text and "skipped 1" in caplog.text
    assert loaded.images.shape[1:] == (32, 32) and loaded.images.dtype == np.uint8


def test_limit_per_class(dataset):
    samples = scan_split(dataset, "train", list(CLASS_NAMES))
    limited = limit_per_class(samples, 3, seed=0)
    assert np.bincount([s.label for s in limited]).tolist() == [3, 3, 3, 3]


def test_class_weights_balance_the_loss():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 2 + [3] * 2)
    weights = class_weights(labels, 4)
    contribution = [weights[c] * np.sum(labels == c) for c in range(4)]
    assert np.allclose(contribution, contribution[0])
    assert weights[0] < weights[3]
