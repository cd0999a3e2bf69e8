"""An open analysis keeps its model: a reader has model A's result open, the served model becomes
B, and the next heatmap is still A's, as the page, the PDF and the "heatmap viewed" row say.
When A is no longer loaded, the film is analysed again by B, with its own audit row, and the
page says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from sqlalchemy import select

from model.decode import decode_image
from model.predictor import Predictor
from model.run_dir import MODEL_FILE
from records import actions
from records.accounts import Actor
from records.db import open_database
from records.settings import MODEL_DIR_ENV, load_settings
from records.tables import AuditEvent
from testkit.apptest import RADIOLOGIST, open_page, synthetic_png, upload
from testkit.model_factory import make_run_dir
from webapp.audited_analysis import analyse_and_record, explain_with_its_model
from webapp.page_state import DIAGNOSE_RESULT

READER = Actor(RADIOLOGIST[0], "radiologist")


def versioned_run(folder: Path, version: str, sign: float) -> Path:
    """A factory run named ``version`` whose logits are scaled by ``sign``: two runs that
    explain the same film differently."""
    make_run_dir(folder)
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False)
    layer = model.get_layer("logits")
    layer.set_weights([weight * sign for weight in layer.get_weights()])
    model.save(folder / MODEL_FILE)
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "version": version}))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    return (versioned_run(tmp_path_factory.mktemp("a"), "model-A", 1.0),
            versioned_run(tmp_path_factory.mktemp("b"), "model-B", -1.0))


def rows(url: str, action: str) -> list[AuditEvent]:
    database = open_database(url)
    try:
        with database.session() as session:
            return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                        .order_by(AuditEvent.seq)))
    finally:
        database.engine.dispose()


def test_another_class_is_explained_by_the_model_that_gave_the_result(
        runs, monkeypatch, app_database_url):
    model_a, model_b = (Predictor.load(run) for run in runs)
    monkeypatch.setenv(MODEL_DIR_ENV, str(runs[0]))
    data = synthetic_png(1, seed=4)
    at = upload(open_page(account=RADIOLOGIST), "chest.png", data)
    first = at.session_state[DIAGNOSE_RESULT].analysis
    assert first.prediction.model_version == "model-A"

    monkeypatch.setenv(MODEL_DIR_ENV, str(runs[1]))  # the served model is now B
    other = next(name for name in model_a.classes if name != first.predicted_class)
    at.selectbox(key="explained_class").set_value(other)
    at.run()
    assert not at.exception, [item.value for item in at.exception]

    shown = at.session_state[DIAGNOSE_RESULT].analysis
    image = decode_image(data, "chest.png")
    from_a = model_a.explain(image, other).heatmap
    assert not np.allclose(from_a, model_b.explain(image, other).heatmap, atol=1e-3)
    np.testing.assert_allclose(shown.heatmaps[other], from_a, atol=1e-5)
    assert shown.prediction == first.prediction
    (viewed,) = rows(app_database_url, actions.HEATMAP_VIEWED)
    assert viewed.model_version == "model-A"
    assert len(rows(app_database_url, actions.ANALYSIS)) == 1


def test_without_its_model_the_film_is_analysed_again_and_says_so(runs, database):
    model_a, model_b = (Predictor.load(run) for run in runs)
    data = synthetic_png(2, seed=5)
    audited = analyse_and_record(database, load_settings(), READER, "upload-1", data,
                                 "chest.png", model_a)
    class_name = next(name for name in model_a.classes
                      if name != audited.state.analysis.predicted_class)

    again, message = explain_with_its_model(database, READER, audited, class_name, None,
                                            model_b)

    assert message == ("Model model-A, which produced this result, is no longer loaded, so the "
                       "film was analysed again with model model-B: everything below is the "
                       "new model's answer.")
    analysis = again.state.analysis
    expected = model_b.explain(decode_image(data, "chest.png"), class_name)
    assert analysis.prediction.model_version == "model-B"
    assert analysis.probabilities == pytest.approx(expected.prediction.probabilities)
    np.testing.assert_allclose(analysis.heatmaps[class_name], expected.heatmap, atol=1e-5)
    with database.session() as session:
        first, second = (session.get(AuditEvent, row_id)
                         for row_id in (audited.audit_id, again.audit_id))
        assert (second.action, second.model_version) == (actions.ANALYSIS, "model-B")
        assert second.image_sha256 == first.image_sha256
        assert json.loads(second.detail)["analysed_again"] == audited.audit_id
