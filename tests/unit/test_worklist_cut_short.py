"""A Worklist batch the model server stops answering part-way through: closed in the audit trail
as cut short, and pressing again goes on from where it stopped without recording an image twice.

The failure is the model server client's own ModelUnavailable, raised at the classification
boundary after the first chunk; the audit trail is the real one in a real database.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from model.predictor import Predictor
from records import actions
from records.accounts import Actor
from records.settings import load_settings
from records.tables import AuditEvent
from serving.client import ModelUnavailable
from testkit.synthetic_data import synthetic_xray
from webapp.audited_worklist import WORKLIST_BATCH, BatchCutShort, audited_upload_batch

READER = Actor("rita", "radiologist")
STOPPED = ("The model server could not analyse the image (HTTP 500: Internal Server Error). "
           "The image is kept: try again, or ask IT to look at the model server.")


class StopsAnswering:
    """A model that answers ``chunks`` classification calls, then fails as the client does when
    its server's replica is killed; everything else is the real predictor's."""

    def __init__(self, predictor: Predictor, chunks: int) -> None:
        self.predictor, self.left = predictor, chunks

    def __getattr__(self, name: str):
        return getattr(self.predictor, name)

    def classify(self, admitted, known_age=None):
        if self.left == 0:
            raise ModelUnavailable(STOPPED)
        self.left -= 1
        return self.predictor.classify(admitted, known_age)


def films(count: int) -> list[tuple[str, bytes]]:
    files = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_xray(index % 4, np.random.default_rng(index), (150, 150))
                        ).save(buffer, format="PNG")
        files.append((f"film{index}.png", buffer.getvalue()))
    return files


def trail(database) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_a_batch_cut_short_is_closed_as_such_and_pressing_again_records_no_image_twice(
        database, factory_predictor):
    settings = dataclasses.replace(load_settings(), batch_chunk_images=2)
    files = films(5)
    with pytest.raises(BatchCutShort) as cut:
        audited_upload_batch(database, READER, files, StopsAnswering(factory_predictor, 1),
                             settings)
    assert str(cut.value) == STOPPED
    first = trail(database)
    assert [row.action for row in first] == [actions.ANALYSIS] * 2 + [WORKLIST_BATCH]
    closing = json.loads(first[-1].detail)
    assert closing["cut_short"] == STOPPED
    assert (closing["images"], closing["unread"]) == (2, 3)
    assert len(cut.value.resume.rows) == 2

    rows, messages = audited_upload_batch(database, READER, files, factory_predictor, settings,
                                          resume=cut.value.resume)
    assert [row.key for row in rows] == [name for name, _ in files] and messages == []
    analysed = [row for row in trail(database) if row.action == actions.ANALYSIS]
    assert len(analysed) == 5
    assert len({row.image_sha256 for row in analysed}) == 5, "an image was recorded twice"
    assert [row.audit_id for row in rows] == [row.id for row in analysed]
    batches = {json.loads(row.detail)["batch"] for row in analysed}
    assert batches == {closing["batch"]}
    done = json.loads(trail(database)[-1].detail)
    assert (done["batch"], done["images"], done["unread"]) == (closing["batch"], 5, 0)
    assert "cut_short" not in done


def test_other_files_after_a_cut_short_batch_are_a_new_batch(database, factory_predictor):
    settings = dataclasses.replace(load_settings(), batch_chunk_images=2)
    with pytest.raises(BatchCutShort) as cut:
        audited_upload_batch(database, READER, films(3), StopsAnswering(factory_predictor, 1),
                             settings)
    rows, _ = audited_upload_batch(database, READER, films(4)[1:], factory_predictor, settings,
                                   resume=cut.value.resume)
    assert len(rows) == 3
    assert json.loads(trail(database)[-1].detail)["batch"] != cut.value.resume.batch
