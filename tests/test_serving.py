"""The model server (python -m serving) on a real local Ray cluster, and the app as its client.

One server for the module, on the session's one cluster; the last test stops it with SIGTERM.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from model.batch import classify
from model.decode import decode_file, decode_image
from model.errors import ImageError
from model.predictor import Predictor
from pipeline.predict import write_record
from records.actions import ANALYSIS, REFUSAL
from records.db import open_database
from records.settings import MODEL_URL_ENV
from records.tables import AuditEvent
from serving.client import ModelClient, ModelUnavailable
from serving.wire import DECODED_HEADER
from testkit.apptest import open_page, result_text, upload
from testkit.model_factory import shipped_run_dir
from testkit.model_server import REPO_ROOT, model_server
from testkit.servers import free_port

PROBABILITY_TOLERANCE = 1e-6
HEATMAP_TOLERANCE = 1 / 255 + 1e-6  # the heatmap travels as an 8-bit PNG
STOP_SECONDS = 30


@pytest.fixture(scope="module")
def embedded() -> Predictor:
    return Predictor.load(shipped_run_dir())


@pytest.fixture(scope="module")
def server(ray_address, tmp_path_factory):
    log = tmp_path_factory.mktemp("serving") / "server.log"
    with model_server(shipped_run_dir(), ray_address, log) as running:
        yield running


@pytest.fixture(scope="module")
def val_files(cxr4_dir) -> list[Path]:
    """The first validation image of each class."""
    return [sorted((cxr4_dir / "val" / label).iterdir())[0]
            for label in sorted(path.name for path in (cxr4_dir / "val").iterdir())]


def png_bytes(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def post(url: str, body: bytes, query: str = "", headers: dict | None = None
         ) -> tuple[int, dict]:
    request = Request(f"{url}/predict{query}", data=body, headers=headers or {}, method="POST")
    try:
        with urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


def cli_fields(files: list[Path], predictor: Predictor) -> list[dict]:
    """What python -m model.predict prints for ``files``, less "file"."""
    out = io.StringIO()
    for outcome in classify(files, decode_file, predictor):
        write_record({}, outcome, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def assert_same_fields(served: dict, expected: dict) -> None:
    assert served.keys() == expected.keys()
    assert served["label"] == expected["label"] and served["model"] == expected["model"]
    difference = max(abs(served["probabilities"][name] - p)
                     for name, p in expected["probabilities"].items())
    assert difference <= PROBABILITY_TOLERANCE


def test_health_names_the_model_and_its_replicas(server, embedded):
    with urlopen(f"{server.url}/healthz", timeout=30) as response:
        assert json.loads(response.read()) == {"model": embedded.version, "replicas": 1}


def test_predictions_are_the_cli_lines_of_the_embedded_predictor(server, embedded, val_files):
    expected = cli_fields(val_files, embedded)
    assert any("probabilities" in fields for fields in expected)
    for path, fields in zip(val_files, expected, strict=True):
        status, served = post(server.url, path.read_bytes())
        assert status == 200, served
        assert_same_fields(served, fields)


def test_the_client_gives_the_embedded_probabilities_and_heatmaps(server, embedded, val_files):
    client = ModelClient(server.url)
    assert client.classes == embedded.classes and client.version == embedded.version
    images = [decode_file(path) for path in val_files]
    for served, local in zip(client.gated_probabilities(images), embedded.outcomes(images),
                             strict=True):
        assert np.abs(served - local).max() <= PROBABILITY_TOLERANCE
    served, local = client.explain(images[0], "COVID19"), embedded.explain(images[0], "COVID19")
    assert served.class_name == local.class_name == "COVID19"
    assert served.heatmap.shape == local.heatmap.shape == images[0].gray.shape
    assert np.abs(served.heatmap - local.heatmap).max() <= HEATMAP_TOLERANCE
    assert max(abs(served.prediction.probabilities[name] - p)
               for name, p in local.prediction.probabilities.items()) <= PROBABILITY_TOLERANCE
    assert served.prediction.familiar == local.prediction.familiar  # the flag travels too


def test_a_refused_image_is_422_with_the_apps_message(server, embedded):
    blank = png_bytes(np.full((256, 256), 128, np.uint8))
    with pytest.raises(ImageError) as refusal:
        embedded.predict(decode_image(blank))
    assert post(server.url, blank) == (422, {"error": str(refusal.value)})
    with pytest.raises(ImageError, match=re.escape(str(refusal.value))):
        ModelClient(server.url).explain(decode_image(blank))
    text = b"Patient notes, not an image\n"
    with pytest.raises(ImageError) as unreadable:
        decode_image(text)
    assert post(server.url, text) == (422, {"error": str(unreadable.value)})


def test_a_file_over_the_upload_limit_is_413(server):
    status, answer = post(server.url, b"\0" * 50_000_001)
    assert status == 413 and "50 MB upload limit" in answer["error"]


def test_malformed_requests_get_a_plain_answer_never_a_traceback(server, val_files):
    data = val_files[0].read_bytes()
    answers = [post(server.url, data, headers={DECODED_HEADER: "{not json"}),
               post(server.url, data, headers={DECODED_HEADER: '{"facts": 3}'}),
               post(server.url, data, query="?heatmap=1&class=PNEUMOTHORAX")]
    assert [status for status, _ in answers] == [400, 400, 400]
    with pytest.raises(HTTPError) as missing:
        urlopen(f"{server.url}/analyse", timeout=30)
    assert missing.value.code == 404
    for _, answer in answers:
        assert answer["error"] and "Traceback" not in answer["error"]


def test_the_app_as_a_client_never_imports_tensorflow(server, embedded, val_files):
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from webapp.analysis import state_for_upload\n"
        "from webapp.resources import load_predictor, run_dir\n"
        "from webapp.worklist import triage_uploads\n"
        "from webapp.worklist_uploads import Upload\n"
        "data = Path(sys.argv[1]).read_bytes()\n"
        "predictor = load_predictor(run_dir())\n"
        "state = state_for_upload('1', data, 'xray.png', predictor)\n"
        "rows = triage_uploads([Upload('xray.png', data)], predictor)\n"
        "print(json.dumps({'upload': state.analysis.probabilities,\n"
        "                  'worklist': rows[0].prediction.probabilities,\n"
        "                  'loaded': [name for name in ('tensorflow', 'keras', 'ray')\n"
        "                             if name in sys.modules]}))\n"
    )
    env = {**os.environ, "CXR_MODEL_URL": server.url, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script, str(val_files[0])], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == []
    local = embedded.predict(decode_file(val_files[0]))
    for probabilities in (answer["upload"], answer["worklist"]):
        assert max(abs(probabilities[name] - p) for name, p in local.items()
                   ) <= PROBABILITY_TOLERANCE


def audit_actions(database_url: str) -> list[str]:
    database = open_database(database_url)
    try:
        with database.session() as session:
            return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))
    finally:
        database.engine.dispose()


def test_the_diagnose_page_analyses_through_the_server(server, app_database_url, monkeypatch,
                                                      val_files):
    monkeypatch.setenv(MODEL_URL_ENV, server.url)
    at = upload(open_page(), "xray.jpg", val_files[0].read_bytes(), "image/jpeg")
    assert "Most likely finding" in result_text(at)
    assert server.url.split("//")[1] not in result_text(at)
    assert audit_actions(app_database_url).count(ANALYSIS) == 1


def test_an_unreachable_server_is_a_plain_message():
    with pytest.raises(ModelUnavailable, match="cannot be reached.*The image is kept"):
        ModelClient(f"http://127.0.0.1:{free_port()}")


def test_a_server_too_slow_to_answer_is_a_plain_message():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ModelUnavailable, match="did not answer within 1 s"):
            ModelClient(url, timeout=1.0)


def test_sigterm_stops_the_server_in_time_and_the_page_keeps_the_upload(
        server, val_files, app_database_url, monkeypatch):
    """Last in this module: it stops the module's server. The page's client was made while the
    server answered (cached per process), so the upload meets a server stopped mid-way."""
    monkeypatch.setenv(MODEL_URL_ENV, server.url)
    at = open_page()
    client = ModelClient(server.url)
    image = decode_file(val_files[0])
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_SECONDS + 30) == 0
    assert time.monotonic() - started <= STOP_SECONDS
    with pytest.raises(ModelUnavailable, match="The image is kept"):
        client.explain(image)
    at = upload(at, "xray.jpg", val_files[0].read_bytes(), "image/jpeg")
    assert any("The image is kept" in error.value for error in at.error)
    assert any(button.label == "Try again" for button in at.button)
    assert at.file_uploader(key="upload").value is not None
    with pytest.raises(KeyError):  # no result container
        at.get_by_key("result")
    assert not {ANALYSIS, REFUSAL} & set(audit_actions(app_database_url))  # nothing analysed
