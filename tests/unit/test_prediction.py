"""The one prediction type: the label is the most probable class, and a refusal has none."""

from __future__ import annotations

import pytest

from model.age_groups import AgeReading
from model.labels import BACTERIAL, CLASS_NAMES, COVID, NORMAL, VIRAL
from model.prediction import Prediction


def test_the_label_is_the_class_with_the_highest_probability():
    prediction = Prediction.of({NORMAL: 0.1, BACTERIAL: 0.2, VIRAL: 0.6, COVID: 0.1}, "v1")
    assert (prediction.label, prediction.probability) == (VIRAL, 0.6)
    assert prediction.refusal is None and prediction.model_version == "v1"


def test_a_tie_goes_to_the_earlier_class_in_the_models_order():
    prediction = Prediction.of(dict.fromkeys(CLASS_NAMES, 0.25), "v1")
    assert prediction.label == CLASS_NAMES[0]


def test_a_refusal_has_no_label_and_no_probabilities():
    refused = Prediction.refused("not a chest X-ray", "v1")
    assert (refused.label, refused.probabilities, refused.probability) == (None, None, None)


@pytest.mark.parametrize("probabilities, refusal", [(None, None), ({NORMAL: 1.0}, "refused")])
def test_a_prediction_holds_probabilities_or_a_refusal_never_both_or_neither(probabilities,
                                                                            refusal):
    with pytest.raises(ValueError):
        Prediction(probabilities, "v1", refusal)


def test_the_json_fields_are_the_cli_lines_keys_in_its_order():
    probabilities = {NORMAL: 0.1, BACTERIAL: 0.2, VIRAL: 0.6, COVID: 0.1}
    estimated = Prediction.of(probabilities, "v1", AgeReading("child", "estimated", 0.97123),
                              familiar=False)
    assert estimated.json_fields() == {
        "label": VIRAL, "probabilities": probabilities, "model": "v1",
        "validated_at_site": None, "age_group": "child", "age_group_source": "estimated",
        "age_group_probability": 0.9712, "familiar": False}
    assert list(estimated.json_fields()) == ["label", "probabilities", "model",
                                             "validated_at_site", "age_group",
                                             "age_group_source", "age_group_probability",
                                             "familiar"]
    plain = Prediction.of(probabilities, "v1", validated_at_site="st-mary")
    assert plain.json_fields() == {"label": VIRAL, "probabilities": probabilities, "model": "v1",
                                   "validated_at_site": "st-mary"}
    assert Prediction.refused("not a chest X-ray", "v1").json_fields() == {
        "error": "not a chest X-ray"}
