"""Bounded uploads: a zip bomb through the Worklist's own path keeps the process's peak memory
within 500 MB and is refused with a message naming the limit; the limits hold while reading,
per batch (pixels) and per PACS image (bytes)."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
import zipfile
from contextlib import contextmanager

import numpy as np
import psutil
import pytest
from PIL import Image

from model.predictor import Predictor
from pacs.client import PacsClient
from pacs.settings import settings_for
from pacs.studies import StudyQuery
from records.accounts import Actor
from records.db import open_database
from records.settings import load_settings
from testkit.model_factory import make_run_dir
from testkit.synthetic_data import synthetic_xray
from webapp.audited_worklist import record_upload_batch
from webapp.worklist import triage_pacs, triage_upload_files

MEMBER_BYTES = 49_000_000
PEAK_GROWTH_LIMIT = 500_000_000
READER = Actor("rita", "radiologist")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor.load(make_run_dir(tmp_path_factory.mktemp("run")))


@pytest.fixture
def database(tmp_path):
    opened = open_database(f"sqlite:///{tmp_path / 'cxr.db'}")
    yield opened
    opened.engine.dispose()


def bomb(members: int) -> bytes:
    """The issue's bomb: members of 49 MB of zeros, each under the 50 MB member limit."""
    buffer = io.BytesIO()
    zeros = bytes(MEMBER_BYTES)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(members):
            archive.writestr(f"film{index:02d}.png", zeros)
    return buffer.getvalue()


@contextmanager
def peak_rss_growth() -> list[int]:
    """The process's resident memory sampled every 5 ms; yields [peak growth in bytes]."""
    process, result, running = psutil.Process(), [0], [True]
    baseline = process.memory_info().rss

    def sample() -> None:
        while running[0]:
            result[0] = max(result[0], process.memory_info().rss - baseline)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        running[0] = False
        sampler.join()


def analyse(files, predictor, database, settings):
    return triage_upload_files(
        files, predictor, settings,
        lambda uploads, rows: record_upload_batch(database, READER, uploads, rows))


def test_a_zip_bomb_is_refused_by_its_headers_within_500_mb(predictor, database):
    data = bomb(60)
    assert len(data) < 3_000_000
    with peak_rss_growth() as growth:
        rows, messages = analyse([("bomb.zip", data)], predictor, database, load_settings())
    print(f"zip bomb ({len(data) / 1e6:.1f} MB, 60 x 49 MB): peak RSS growth "
          f"{growth[0] / 1e6:.0f} MB")
    assert rows == []
    assert messages == ["bomb.zip would expand to 2.9 GB; the limit is 1.0 GB per archive. "
                        "Nothing in it was read."]
    assert growth[0] < PEAK_GROWTH_LIMIT


def test_a_bomb_under_the_size_limit_is_refused_by_its_ratio(predictor, database):
    rows, messages = analyse([("small.zip", bomb(4))], predictor, database, load_settings())
    assert rows == []
    assert len(messages) == 1 and "the limit is 100 to 1" in messages[0]


def test_reading_stops_at_the_limits_even_when_the_headers_pass(predictor, database,
                                                                monkeypatch):
    """Headers can lie: with the header check out of the way, reading enforces the limits."""
    monkeypatch.setattr("model.bounded_zip.check_headers", lambda *_args: None)
    with peak_rss_growth() as growth:
        rows, messages = analyse([("bomb.zip", bomb(60))], predictor, database,
                                 load_settings())
    print(f"zip bomb read past its headers: peak RSS growth {growth[0] / 1e6:.0f} MB")
    assert len(messages) == 1 and "limit (X-rays do not compress like that)" in messages[0]
    assert growth[0] < PEAK_GROWTH_LIMIT
    settings = dataclasses.replace(load_settings(), zip_max_ratio=1e9,
                                   zip_max_total_bytes=150_000_000)
    with peak_rss_growth() as growth:
        rows, messages = analyse([("bomb.zip", bomb(60))], predictor, database, settings)
    # three members read, refused
    assert len(rows) == 3 and all(row.prediction.refusal for row in rows)
    assert messages == ["bomb.zip: the archive expands beyond 150 MB, the limit per archive; "
                        "reading stopped at bomb.zip/film03.png."]
    assert growth[0] < PEAK_GROWTH_LIMIT


def png(seed: int, shape=(300, 260)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray(0, np.random.default_rng(seed), shape)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_batch_keeps_at_most_its_pixel_limit_and_says_so(predictor, database):
    settings = dataclasses.replace(load_settings(), batch_max_megapixels=0.2,
                                   batch_chunk_images=2)
    files = [(f"film{index}.png", png(index)) for index in range(5)]
    rows, messages = analyse(files, predictor, database, settings)
    assert messages == [] and len(rows) == 5
    kept = [row for row in rows if row.image is not None]
    assert sum(row.image.gray.size for row in kept) <= 200_000 and len(kept) == 2
    refused = [row for row in rows if row.image is None]
    assert all("its limit of 0.2 megapixels of images" in row.prediction.refusal for row in refused)
    assert all(row.audit_id is not None for row in rows)


def test_a_pacs_image_over_the_answer_limit_is_refused_unread(pacs_archive, predictor):
    configured = settings_for(pacs_archive.orthanc.dicomweb_url, pacs_archive.environment())
    settings = dataclasses.replace(configured, max_answer_bytes=10_000)
    rows = triage_pacs(PacsClient(settings), StudyQuery(), predictor)
    images = [row for row in rows if row.pacs_item is not None and row.prediction.refusal
              and "larger than" in row.prediction.refusal]
    assert images and all(row.image is None for row in images)
    assert "0 MB, the limit per image (CXR_PACS_MAX_ANSWER_BYTES)" in images[0].prediction.refusal
    unbounded = triage_pacs(PacsClient(configured), StudyQuery(), predictor)
    assert any(row.prediction.probabilities for row in unbounded)
