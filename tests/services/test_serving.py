"""The model server (python -m serving) on a real local Ray cluster, and the app as its client.

One server for the module, on the session's one cluster; the last test stops it with SIGTERM.
Servers on their own local cluster show a restart on another model, Ray's ports on loopback
and a stop by the process group's SIGTERM. Slow and oversized clients target 127.0.0.1 only,
bounded in count and time.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import numpy as np
import psutil
import pytest
from PIL import Image
from sqlalchemy import select

from model.batch import classify
from model.classifier import Classifier
from model.decode import decode_file, decode_image
from model.errors import ImageError
from model.predictor import Predictor
from pipeline.predict import write_record
from records.actions import ANALYSIS, REFUSAL
from records.db import open_database
from records.settings import MODEL_TOKEN_ENV, MODEL_URL_ENV
from records.tables import AuditEvent
from serving.client import ModelClient, ModelUnavailable
from serving.wire import DECODED_HEADER
from testkit.apptest import open_page, result_text, upload
from testkit.model_factory import shipped_run_dir
from testkit.model_server import REPO_ROOT, TOKEN, model_server
from testkit.servers import free_port

PROBABILITY_TOLERANCE = 1e-6
HEATMAP_TOLERANCE = 1 / 255 + 1e-6  # the heatmap travels as an 8-bit PNG
STOP_SECONDS = 15
SLOW_CLIENTS = 70
SLOW_BYTE_EVERY_S = 2.0
SLOW_HOLD_S = 8.0  # how long the slow clients keep trickling (bounded: count and time)


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


def post(url: str, body: bytes, query: str = "", headers: dict | None = None,
         token: str | None = TOKEN) -> tuple[int, dict]:
    authorised = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = Request(f"{url}/predict{query}", data=body, headers={**authorised, **(headers or {})},
                      method="POST")
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


def get(url: str, path: str, token: str | None = None) -> tuple[int, dict]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urlopen(Request(f"{url}{path}", headers=headers), timeout=30) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_is_a_liveness_answer_only(server):
    assert get(server.url, "/healthz") == (200, {"status": "ok"})


def test_predict_and_metadata_refuse_a_missing_or_wrong_token(server, embedded, val_files):
    data = val_files[0].read_bytes()
    for token in (None, "wrong", TOKEN + "x", ""):
        for status, answer in (post(server.url, data, token=token),
                               get(server.url, "/metadata", token)):
            assert status == 401 and "token" in answer["error"]
            assert embedded.version not in json.dumps(answer)
    assert get(server.url, "/metadata", TOKEN)[1]["version"] == embedded.version
    with pytest.raises(ModelUnavailable, match="refused this app's token.*image is kept"):
        ModelClient(server.url, "wrong")


def test_a_server_on_another_machines_reach_needs_a_token(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != MODEL_TOKEN_ENV}
    done = subprocess.run([sys.executable, "-m", "serving", "--host", "0.0.0.0", "--port",
                           str(free_port())], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={**env, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 2 and f"set ${MODEL_TOKEN_ENV}" in done.stderr


def test_predictions_are_the_cli_lines_of_the_embedded_predictor(server, embedded, val_files):
    expected = cli_fields(val_files, embedded)
    assert any("probabilities" in fields for fields in expected)
    for path, fields in zip(val_files, expected, strict=True):
        status, served = post(server.url, path.read_bytes())
        assert status == 200, served
        assert_same_fields(served, fields)


def test_the_client_gives_the_embedded_probabilities_and_heatmaps(server, embedded, val_files):
    client = ModelClient(server.url, server.token)
    assert isinstance(client, Classifier)
    assert client.classes == embedded.classes and client.version == embedded.version
    images = [decode_file(path) for path in val_files]
    for served, local in zip(client.classify([client.admit(image) for image in images]),
                             embedded.classify([embedded.admit(image) for image in images]),
                             strict=True):
        assert max(abs(served.probabilities[name] - p)
                   for name, p in local.probabilities.items()) <= PROBABILITY_TOLERANCE
        assert (served.label, served.model_version, served.familiar) == (
            local.label, local.model_version, local.familiar)
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
        ModelClient(server.url, server.token).explain(decode_image(blank))
    text = b"Patient notes, not an image\n"
    with pytest.raises(ImageError) as unreadable:
        decode_image(text)
    assert post(server.url, text) == (422, {"error": str(unreadable.value)})


def raw_answer(port: int, head: bytes, timeout: float) -> bytes:
    """What the server at 127.0.0.1:``port`` answers to ``head`` (and no more), within
    ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        client.sendall(head)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


def test_a_request_announcing_100_mb_is_413_before_its_body(server):
    started = time.monotonic()
    answer = raw_answer(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: "
                        b"Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100000000\r\n\r\n",
                        timeout=10)
    assert time.monotonic() - started <= 3.0
    assert answer.startswith(b"HTTP/1.1 413") and b"50 MB upload limit" in answer


def test_a_chunked_body_over_the_limit_is_cut_off_at_the_limit(server):
    front = psutil.Process(server.process.pid)
    before = front.memory_info().rss
    chunk = b"\0" * 1_000_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                       + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        with pytest.raises(OSError):  # cut off once past the limit (a reset ends the sending)
            for _ in range(200):  # bounded: 200 MB at most
                client.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        assert sent <= 60_000_000
    assert front.memory_info().rss - before <= 150_000_000
    assert get(server.url, "/healthz") == (200, {"status": "ok"})  # and it still answers


def test_an_image_over_the_servers_pixel_cap_is_refused_plainly(server):
    huge = png_bytes(np.zeros((7000, 7000), np.uint8))  # 49 megapixels, a few hundred KB
    status, answer = post(server.url, huge)
    assert status == 422 and "7000 × 7000 pixels" in answer["error"]
    assert "megapixel limit" in answer["error"]


def test_a_normal_request_is_answered_while_slow_clients_hold_connections(server, val_files):
    """70 clients, their token given, announce a small body and send it a byte every 2 s."""
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
            + b"\r\nContent-Length: 1000\r\n\r\n")
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5)
            for _ in range(SLOW_CLIENTS)]
    stop = threading.Event()

    def trickle() -> None:
        deadline = time.monotonic() + SLOW_HOLD_S
        for client in slow:
            client.sendall(head)
        while not stop.wait(SLOW_BYTE_EVERY_S) and time.monotonic() < deadline:
            for client in slow:
                client.sendall(b"\0")

    trickling = threading.Thread(target=trickle)
    trickling.start()
    try:
        time.sleep(1.0)  # every slow client is in
        started = time.monotonic()
        status, _ = post(server.url, val_files[0].read_bytes())
        assert status == 200 and time.monotonic() - started <= 5.0
    finally:
        stop.set()
        trickling.join()
        for client in slow:
            client.close()


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
    env = {**os.environ, MODEL_URL_ENV: server.url, MODEL_TOKEN_ENV: server.token,
           "PYTHONPATH": str(REPO_ROOT)}
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
    monkeypatch.setenv(MODEL_TOKEN_ENV, server.token)
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
    monkeypatch.setenv(MODEL_TOKEN_ENV, server.token)
    at = open_page()
    client = ModelClient(server.url, server.token)
    image = decode_file(val_files[0])
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_SECONDS + 30) == 0
    assert time.monotonic() - started <= STOP_SECONDS
    assert "stopped on SIGTERM" in server.log.read_text()
    with pytest.raises(ModelUnavailable, match="The image is kept"):
        client.explain(image)
    at = upload(at, "xray.jpg", val_files[0].read_bytes(), "image/jpeg")
    assert any("The image is kept" in error.value for error in at.error)
    assert any(button.label == "Try again" for button in at.button)
    assert at.file_uploader(key="upload").value is not None
    with pytest.raises(KeyError):  # no result container
        at.get_by_key("result")
    assert not {ANALYSIS, REFUSAL} & set(audit_actions(app_database_url))  # nothing analysed


def renamed_copy(run_dir: Path, folder: Path, version: str) -> Path:
    """``run_dir`` copied, its metadata naming ``version``: another model, as the server sees it."""
    copy = shutil.copytree(run_dir, folder)
    metadata = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**metadata, "version": version}))
    return copy


def test_results_name_the_model_that_answered_after_a_restart_on_another_model(
        tmp_path, embedded, val_files):
    other = renamed_copy(shipped_run_dir(), tmp_path / "other", embedded.version + "-other")
    image = decode_file(val_files[0])
    port = free_port()
    with model_server(other, None, tmp_path / "first.log", num_cpus=1, port=port) as first:
        client = ModelClient(first.url, first.token)
        assert client.explain(image).prediction.model_version == embedded.version + "-other"
    with model_server(shipped_run_dir(), None, tmp_path / "second.log", num_cpus=1,
                      port=port):
        explained = client.explain(image)
        [batch] = client.classify([client.admit(image)])
    assert explained.prediction.model_version == batch.model_version == embedded.version
    assert client.version == client.metadata.version == embedded.version


def listening(process: psutil.Process) -> list[tuple[str, str]]:
    """(address, process name) of every port the process and its descendants listen on, as
    ``ss -ltnp`` shows them."""
    names = {child.pid: child.name() for child in (process, *process.children(recursive=True))}
    lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return [(line.split()[3], names[pid]) for line in lines
            for pid in {int(pid) for pid in re.findall(r"pid=(\d+)", line)} & names.keys()]


def test_its_own_cluster_listens_on_loopback_and_stops_on_the_groups_sigterm(tmp_path):
    """Every port on loopback but one that Ray Serve 2.60 binds to all addresses in each
    replica, unconfigurable (its inter-deployment gRPC, under Ray's token): the firewall's."""
    with model_server(shipped_run_dir(), None, tmp_path / "own.log", num_cpus=1) as own:
        main = psutil.Process(own.process.pid)
        addresses = listening(main)
        assert (f"127.0.0.1:{own.port}", main.name()) in addresses and len(addresses) > 5
        public = [(address, name) for address, name in addresses
                  if not re.match(r"(\[::ffff:)?127\.0\.0\.1\]?:", address)]
        assert [name for _, name in public] in ([], ["ray::ServeReplica:cxr-model:ModelServer"]
                                                ), addresses
        tree = [main, *main.children(recursive=True)]
        started = time.monotonic()
        os.killpg(os.getpgid(own.process.pid), signal.SIGTERM)  # what systemd sends
        assert own.process.wait(timeout=STOP_SECONDS + 30) == 0
        assert time.monotonic() - started <= STOP_SECONDS
        _, alive = psutil.wait_procs(tree[1:], timeout=2)
        assert alive == []
        assert re.search(r"stopped on SIGTERM in [\d.]+ s", own.log.read_text())
