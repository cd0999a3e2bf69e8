"""Age heads: one block of class logits per age group, read for the known group or marginalised.

Pins the block arithmetic (model.populations), the DICOM age group (model.dicom), and the
predictor and CLI on a small real model with two age heads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from model.age_groups import AGE_GROUPS, AgeReading, known_age
from model.calibration import softmax
from model.decode import decode_image
from model.dicom import HeaderAge, header_age
from model.populations import block_targets, class_logits
from model.predictor import Predictor
from testkit.dicom_factory import FAKE_PATIENT, make_dicom
from testkit.model_factory import make_run_dir
from testkit.predict_cli import predict_cli
from testkit.synthetic_data import smooth_xray

RAW = np.array([[1.0, 2.0, 0.5, -1.0, 0.0, 3.0, 1.0, -4.0]], np.float32)


def test_a_known_group_reads_its_own_block():
    adult = np.asarray(class_logits(RAW, np.array([0]), 2, 4))
    child = np.asarray(class_logits(RAW, np.array([1]), 2, 4))
    np.testing.assert_allclose(adult, RAW[:, :4])
    np.testing.assert_allclose(child, RAW[:, 4:])


def test_an_unknown_group_gives_the_marginal_over_the_blocks():
    marginal = softmax(np.asarray(class_logits(RAW, np.array([-1]), 2, 4)))
    joint = softmax(RAW).reshape(2, 4)
    np.testing.assert_allclose(marginal[0], joint.sum(axis=0), atol=1e-6)


def test_one_block_is_the_classes_themselves():
    np.testing.assert_allclose(np.asarray(class_logits(RAW[:, :4], np.array([-1]), 1, 4)),
                               RAW[:, :4])


def test_targets_lie_in_the_images_own_block():
    allowed = np.array([[1, 0, 0, 0], [0, 1, 1, 0]], np.float32)
    targets = block_targets(allowed, np.array([1, 0]), 2)
    np.testing.assert_array_equal(targets, [[0, 0, 0, 0, 1, 0, 0, 0],
                                            [0, 1, 1, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize(("tags", "expected"), [
    ({"PatientAge": "045Y"}, "adult"),
    ({"PatientAge": "017Y"}, "pediatric"),
    ({"PatientAge": "006M"}, "pediatric"),
    ({"PatientBirthDate": "20100102", "StudyDate": "20200101"}, "pediatric"),
    ({"PatientBirthDate": "19500101", "StudyDate": "20200101"}, "adult"),
    ({"PatientAge": "045Y", "PatientBirthDate": "19750301", "StudyDate": "20200601"}, "adult"),
    ({"PatientBirthDate": "19500101"}, None),
    ({}, None),
])
def test_the_dicom_header_gives_only_the_age_group(tags, expected):
    assert header_age(_dataset(tags)) == HeaderAge(expected)


def _dataset(tags: dict[str, str]) -> Dataset:
    ds = Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(("tags", "why"), [
    ({"PatientAge": "999Y"}, "patient age gives an age over 130 years"),
    ({"PatientAge": "-05Y"}, "patient age is not an age"),
    ({"PatientAge": "abc"}, "patient age is not an age"),
    ({"PatientBirthDate": "18000101", "StudyDate": "20200101"}, "birth date gives an age over"),
    ({"PatientBirthDate": "20300101", "StudyDate": "20200101"}, "birth date is in the future"),
    ({"PatientBirthDate": "20150101", "StudyDate": "20100101"}, "after the study's date"),
    ({"PatientBirthDate": "2010", "StudyDate": "20200101"}, "is not a date"),
    ({"PatientAge": "045Y", "PatientBirthDate": "20150101", "StudyDate": "20200101"},
     "patient age and its birth date disagree"),
])
def test_an_impossible_or_contradictory_header_age_is_not_used_and_says_why(tags, why):
    age = header_age(_dataset(tags))
    assert age.group is None
    assert why in age.problem and "the model estimated the age group" in age.problem
    for value in tags.values():  # the age and the dates themselves are never repeated
        assert value not in age.problem


def test_a_persons_choice_wins_over_the_header_and_a_contradiction_is_noted():
    overridden = known_age("pediatric", "adult")
    assert (overridden.group, overridden.source) == ("adult", "given")
    assert overridden.notes == ("The reader chose an adult's film, but the DICOM header's age "
                                "says a child's film: it was read as the reader chose.",)
    assert known_age("adult", "adult") == AgeReading("adult", "given")
    assert known_age("pediatric", "auto") == AgeReading("child", "dicom")
    assert known_age(None, None) is None
    unusable = known_age(None, None, "The DICOM header's age was not used (...)")
    assert (unusable.group, unusable.notes) == (None, ("The DICOM header's age was not used "
                                                       "(...)",))


@pytest.fixture(scope="module")
def age_head_run(tmp_path_factory) -> Path:
    # Uncalibrated (temperature 1): the marginal is then exactly the mixture of the two
    # conditionals that the predictor test checks.
    return make_run_dir(tmp_path_factory.mktemp("age-heads"), temperature=None,
                        age_heads=list(AGE_GROUPS))


@pytest.fixture(scope="module")
def age_head_predictor(age_head_run) -> Predictor:
    return Predictor.load(age_head_run)


def _xray(seed: int = 3) -> np.ndarray:
    return smooth_xray(np.random.default_rng(seed))


def test_the_predictor_reads_the_given_group_or_estimates_it(age_head_predictor):
    image = _xray()
    estimated = age_head_predictor.explain(image)
    as_child = age_head_predictor.explain(image, age_group="child")
    as_adult = age_head_predictor.explain(image, age_group="adult")
    assert estimated.prediction.age.source == "estimated"
    assert 0.5 <= estimated.prediction.age.probability <= 1.0
    assert as_child.prediction.age == AgeReading("child", "given")
    assert as_adult.prediction.age == AgeReading("adult", "given")
    # The marginal lies between the two conditionals, class by class.
    for name, p in estimated.prediction.probabilities.items():
        low, high = sorted((as_child.prediction.probabilities[name],
                            as_adult.prediction.probabilities[name]))
        assert low - 1e-6 <= p <= high + 1e-6
    assert as_child.prediction.probabilities != as_adult.prediction.probabilities


def test_an_unknown_age_group_name_is_refused(age_head_predictor):
    with pytest.raises(ValueError, match="unknown age group"):
        age_head_predictor.explain(_xray(), age_group="teenager")


def test_a_dicom_headers_age_is_used_and_a_person_overrides_it(age_head_predictor):
    patient = {**FAKE_PATIENT, "PatientAge": "007Y", "PatientBirthDate": "20120601"}
    image = decode_image(make_dicom(_xray(), patient=patient), "film.dcm")
    assert image.age_group == "pediatric"
    read = age_head_predictor.explain(image).prediction.age
    assert read.describe() == "child (from the DICOM header)"
    overridden = age_head_predictor.explain(image, age_group="adult").prediction.age
    assert (overridden.group, overridden.source) == ("adult", "given")
    assert "the DICOM header's age says a child's film" in overridden.notes[0]


def test_the_cli_prints_the_age_group_and_how_it_was_known(age_head_run, tmp_path):
    image_path = tmp_path / "film.png"
    Image.fromarray(_xray()).save(image_path)
    lines = []
    for flag in ("auto", "child"):
        result = predict_cli(image_path, "--model", age_head_run, "--age-group", flag)
        assert result.returncode == 0, result.stderr
        lines.append(json.loads(result.stdout.splitlines()[0]))
    assert lines[0]["age_group_source"] == "estimated" and "age_group_probability" in lines[0]
    assert lines[1]["age_group"] == "child" and lines[1]["age_group_source"] == "given"
    assert set(lines[1]) >= {"file", "label", "probabilities", "model"}
