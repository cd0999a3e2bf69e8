"""Each analysed film's pooled features are kept beside its audit row (Diagnose and Worklist),
on SQLite and a real PostgreSQL server, and read back by model version for the shift check;
a refusal, or a prediction without features (a model server's), keeps none."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from model.prediction import Prediction
from records import analysis_features, audit
from records.accounts import Actor
from records.settings import Settings
from records.tables import AnalysisFeatures
from testkit.synthetic_data import synthetic_xray
from webapp.audited_analysis import analyse_and_record, append_image, image_event
from webapp.audited_worklist import record_upload_batch
from webapp.worklist import triage_uploads
from webapp.worklist_uploads import Upload

RITA = Actor("rita", "radiologist")


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray(seed % 4, np.random.default_rng(seed), (180, 160))).save(
        buffer, format="PNG")
    return buffer.getvalue()


def stored_rows(database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(AnalysisFeatures))


def test_a_diagnose_analysis_keeps_its_features_and_a_refusal_none(database, factory_predictor,
                                                                    tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url="unused")
    data = png(1)
    analysed = analyse_and_record(database, settings, RITA, "u1", data, "patient-name.png",
                                  factory_predictor)
    refused = analyse_and_record(database, settings, RITA, "u2", b"not an image", "x.png",
                                 factory_predictor)
    assert analysed.state.analysis is not None and refused.state.analysis is None
    assert stored_rows(database) == 1
    kept = analysis_features.latest(database, [factory_predictor.version], 10)
    (expected,) = factory_predictor.classify(
        [factory_predictor.admit(analysed.state.analysis.image)])
    np.testing.assert_allclose(kept, expected.features[None].astype(np.float32))


def test_worklist_rows_keep_their_features_in_the_batchs_transaction(database,
                                                                     factory_predictor):
    uploads = [Upload(f"film-{seed}.png", png(seed)) for seed in range(4)] + [
        Upload("bad.png", b"nope")]
    rows = triage_uploads(uploads, factory_predictor)
    recorded = record_upload_batch(database, RITA, uploads, rows)
    accepted = [row for row in recorded if row.prediction.refusal is None]
    assert len(accepted) == 4 and stored_rows(database) == 4
    kept = analysis_features.latest(database, [factory_predictor.version], 3)
    newest_first = [row.prediction.features for row in reversed(accepted)][:3]
    np.testing.assert_array_equal(kept, np.stack(newest_first).astype(np.float32))
    assert analysis_features.latest(database, ["another model"], 10).shape[0] == 0


def test_a_prediction_without_features_keeps_none_and_since_reads_by_time(database):
    with_features = Prediction.of({"NORMAL": 0.9, "COVID19": 0.1}, "v1",
                                  features=np.arange(8, dtype=np.float32))
    from_a_server = Prediction.of({"NORMAL": 0.9, "COVID19": 0.1}, "v1")
    with audit.audited(database) as session:
        for prediction in (with_features, from_a_server):
            append_image(session, image_event(RITA, prediction, None, None, None, None, 1.0),
                         prediction)
    times, features = analysis_features.since(database, ["v1"],
                                              audit.now_utc() - timedelta(hours=1))
    assert len(times) == 1 and features.tolist() == [list(range(8))]
    assert analysis_features.since(database, ["v1"], audit.now_utc() + timedelta(hours=1)
                                   )[1].shape[0] == 0


def test_the_features_are_not_in_the_prediction_json_or_its_repr():
    prediction = Prediction.of({"NORMAL": 1.0}, "v1", features=np.ones(4))
    assert "features" not in prediction.json_fields() and "features" not in repr(prediction)
    assert prediction == Prediction.of({"NORMAL": 1.0}, "v1")


def test_the_predictor_gives_each_accepted_film_its_features(factory_predictor):
    image = factory_predictor.admit(synthetic_xray(0, np.random.default_rng(5), (180, 160)))
    (prediction,) = factory_predictor.classify([image])
    assert prediction.features.dtype == np.float16
    np.testing.assert_allclose(prediction.features.astype(np.float32),
                               factory_predictor.logits_and_features(image[None])[1][0],
                               rtol=1e-2,
                               atol=1e-2)
