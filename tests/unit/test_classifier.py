"""The one interface the pages type against: the loaded model and the model server's client
answer it alike, method for method."""

from __future__ import annotations

import inspect

import pytest

from model.classifier import Classifier
from model.predictor import Predictor
from serving.client import ModelClient

METHODS = ("admit", "known_age", "classify", "explain")


@pytest.mark.parametrize("implementation", [Predictor, ModelClient])
@pytest.mark.parametrize("method", METHODS)
def test_the_predictor_and_the_client_take_what_the_protocol_names(implementation, method):
    expected = inspect.signature(getattr(Classifier, method)).parameters
    given = inspect.signature(getattr(implementation, method)).parameters
    assert list(given) == list(expected)
    assert [p.default for p in given.values()] == [p.default for p in expected.values()]


def test_a_loaded_predictor_is_a_classifier(factory_model_dir):
    assert isinstance(Predictor.load(factory_model_dir), Classifier)
