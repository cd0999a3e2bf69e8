"""The training data: class folders, patient-grouped splits, class weights, bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from model.labels import CLASS_NAMES
from testkit.synthetic_data import make_dataset
from training.data import (
    DatasetError,
    LabelSpace,
    find_classes,
    find_label_space,
    limit_per_class,
    load_split,
    sampling_weights,
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


SPACE = LabelSpace(tuple(CLASS_NAMES), (("PNEUMONIA", CLASS_NAMES[1:3]),))


def _class_share(weights, labels, sources=None):
    """Each class's drawn share, a label set's images counted half to each of its classes."""
    share = SPACE.masks()[labels] / SPACE.masks()[labels].sum(axis=1, keepdims=True)
    return weights @ share


def test_sampling_balances_the_classes():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 2 + [3] * 2)
    weights = sampling_weights(labels, ["a"] * 12, SPACE)
    assert weights.sum() == pytest.approx(1.0)
    assert np.allclose(_class_share(weights, labels), 0.25)
    assert weights[0] < weights[-1], "a NORMAL image is drawn less often than a rare COVID-19"


def test_a_label_set_counts_as_a_share_of_each_of_its_classes():
    # 4 bacterial, 2 viral, 4 "pneumonia, type unknown" (half bacterial, half viral each)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 2 + [3] * 4 + [4] * 4)
    weights = sampling_weights(labels, ["a"] * 18, SPACE)
    drawn = _class_share(weights, labels)
    raw = _class_share(np.full(18, 1 / 18), labels)
    # One weight per image cannot balance two coupled classes exactly; close enough, and
    # far closer than drawing every image equally often.
    assert np.abs(drawn - 0.25).max() < 0.03 < np.abs(raw - 0.25).max()


def test_source_balance_interpolates_between_raw_and_equal_sources():
    # NORMAL: 9 images of source "big", 1 of "small"; the other classes one source each.
    labels = np.array([0] * 10 + [1, 2, 3])
    sources = ["big"] * 9 + ["small"] + ["x", "y", "z"]
    small_share = {}
    for balance in (0.0, 0.5, 1.0):
        weights = sampling_weights(labels, sources, SPACE, source_balance=balance)
        assert np.allclose(_class_share(weights, labels), 0.25)
        small_share[balance] = weights[9] / weights[:10].sum()
    assert small_share[0.0] == pytest.approx(0.1)
    assert small_share[0.5] == pytest.approx(1 / (1 + 3))  # sqrt(1) / (sqrt(9) + sqrt(1))
    assert small_share[1.0] == pytest.approx(0.5)


def test_sampling_without_class_balance_keeps_the_class_mix():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 2 + [3] * 2)
    weights = sampling_weights(labels, ["a"] * 12, SPACE, balance_classes=False)
    assert np.allclose(weights, 1 / 12)


def test_a_class_without_images_is_a_clear_error():
    with pytest.raises(DatasetError, match="COVID19"):
        sampling_weights(np.array([0, 1, 2]), ["a"] * 3, SPACE)


def test_several_roots_and_a_label_set_folder(tmp_path):
    child = make_dataset(tmp_path / "child", per_class=2, val_per_class=1)
    adult = make_dataset(tmp_path / "adult", per_class=2, val_per_class=1)
    for split in ("train", "val"):  # the adult root: NORMAL, COVID19 and untyped PNEUMONIA
        (adult / split / "BACTERIAL_PNEUMONIA").rename(adult / split / "PNEUMONIA")
        for path in (adult / split / "VIRAL_PNEUMONIA").iterdir():
            path.unlink()
        (adult / split / "VIRAL_PNEUMONIA").rmdir()
    sets = {"PNEUMONIA": ("BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA")}
    space = find_label_space([child, adult], "train", sets)
    assert space.classes == tuple(CLASS_NAMES)
    assert space.keys == (*CLASS_NAMES, "PNEUMONIA")
    assert space.masks()[4].tolist() == [False, True, True, False]
    samples = scan_split(child, "train", space, ["child"]) + scan_split(adult, "train", space)
    assert {s.label for s in samples if s.path.is_relative_to(adult)} == {0, 3, 4}
    assert {(s.source, s.age_group) for s in samples} == {("child", "pediatric"),
                                                          ("adult", "adult")}
    loaded = load_split(samples, 16, "train")
    assert loaded.populations(space.keys)["adult"] == {
        "age_group": "adult", "counts": {"COVID19": 2, "NORMAL": 2, "PNEUMONIA": 2}}


def test_the_source_is_the_manifest_patient_namespace(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=2, with_val=False)
    manifest = root / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",train-", ",hospital:train-"))
    samples = scan_split(root, "train", list(CLASS_NAMES), ["hospital"])
    assert {(s.source, s.age_group) for s in samples} == {("hospital", "pediatric")}
