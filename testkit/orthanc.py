"""A real DICOM archive for tests and benchmarks: Debian's Orthanc with its DICOMweb plugin.

Started as a plain process on 127.0.0.1 with free ports and its own storage folder, with
basic authentication on (one user), and stopped afterwards.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.servers import free_port, stop_process

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "radiology", "orthanc-test-secret"


def missing_reason() -> str | None:
    """Why Orthanc cannot run here, or None when it can."""
    for path in (ORTHANC, DICOMWEB_PLUGIN):
        if not path.is_file():
            return (f"{path} is absent: install Debian's orthanc and orthanc-dicomweb "
                    "(apt-get install orthanc orthanc-dicomweb) to run the PACS tests")
    return None


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST root, its DICOMweb root, and the one user's login."""

    url: str
    user: str = USER
    password: str = PASSWORD

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def _request(self, path: str, data: bytes | None = None,
                 content_type: str = "application/dicom") -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", data=data)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read()

    def store(self, dicom: bytes) -> None:
        """Store one DICOM Part 10 file (Orthanc's REST API, not the code under test)."""
        self._request("/instances", dicom)

    def get_json(self, path: str) -> object:
        return json.loads(self._request(path))

    def instances_of_study(self, study_uid: str) -> list[bytes]:
        """Every stored DICOM file of a study (by StudyInstanceUID), for reading back."""
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
        found = json.loads(self._request("/tools/find", json.dumps(query).encode(),
                                         "application/json"))
        return [self._request(f"/instances/{orthanc_id}/file") for orthanc_id in found]


def _config(storage: Path, http_port: int, dicom_port: int) -> dict:
    return {
        "Name": "cxr-test-orthanc",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }


def _wait_ready(orthanc: Orthanc, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with code {process.returncode}")
        try:
            orthanc.get_json("/system")
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise TimeoutError(f"Orthanc at {orthanc.url} did not answer /system within {timeout:.0f} s")


@contextmanager
def running_orthanc(folder: Path, timeout: float = 30.0) -> Iterator[Orthanc]:
    """Start Orthanc with storage and log in ``folder``; stop it (SIGTERM) on exit."""
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = folder / "orthanc.json"
    http_port = free_port()
    config.write_text(json.dumps(_config(storage, http_port, free_port())))
    orthanc = Orthanc(f"http://127.0.0.1:{http_port}")
    with open(folder / "orthanc.log", "wb") as log:
        process = subprocess.Popen([str(ORTHANC), str(config)], stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        _wait_ready(orthanc, process, timeout)
        yield orthanc
    finally:
        stop_process(process)
