"""A real local Ray cluster and the model server on it, for tests and benchmarks.

``ray_cluster`` starts the one cluster (in this process, ``num_cpus`` within the machine);
``model_server`` runs ``python -m serving`` joined to it (or on its own local cluster), as an
operator would, in its own process group as systemd starts a service, and waits for ``/healthz``
(the server listens once its replicas are ready).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from records.settings import MODEL_TOKEN_ENV
from testkit.servers import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"  # what the tests' servers require and their clients send
START_TIMEOUT_S = 240.0  # a replica loads TensorFlow and the model; slow on a busy 2-core box


@contextmanager
def ray_cluster(num_cpus: int = 2) -> Iterator[str]:
    """A local Ray cluster for the duration; yields the address other drivers join."""
    import ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log: Path
    token: str | None
    port: int

    def authorised(self) -> dict[str, str]:
        """The header a client of this server sends."""
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}


def health(url: str, timeout: float = 5.0) -> dict | None:
    """The server's /healthz answer, or None while it cannot give one."""
    try:
        with urlopen(f"{url}/healthz", timeout=timeout) as response:
            return json.loads(response.read())
    except (URLError, OSError, ValueError):
        return None


@contextmanager
def model_server(run_dir: Path, ray_address: str | None, log: Path, replicas: int = 1,
                 num_cpus: int = 2, token: str | None = TOKEN, port: int | None = None
                 ) -> Iterator[RunningServer]:
    """``python -m serving`` on the cluster at ``ray_address`` (None: its own local cluster of
    ``num_cpus``) requiring ``token``, on ``port`` (default: a free one), answering /healthz."""
    port = port or free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", MODEL_TOKEN_ENV)}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)})
    if ray_address is not None:
        env["RAY_ADDRESS"] = ray_address
    if token is not None:
        env[MODEL_TOKEN_ENV] = token
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(port), "--replicas", str(replicas),
             "--model", str(run_dir), "--num-cpus", str(num_cpus)],
            cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log, token, port)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while health(server.url) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not start: {log.read_text()[-3000:]}")
            time.sleep(1.0)
        yield server
    finally:
        if process.poll() is None:
            stop_process(process, grace_s=60.0)
