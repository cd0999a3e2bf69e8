"""The model server under load, the app as its client, and Ray Data against the plain CLI.

    python -m bench.serving [--model RUN_DIR] [--data DIR] [--requests 48] [--images 200]
        [--out FILE]

1. For 1 and 2 replicas (each on its own local 2-CPU Ray cluster, started by python -m serving):
   requests per second and p50/p95 latency of POST /predict with real X-ray files at
   concurrency 1, 4 and 16 (after a warm-up).
2. Resident memory of a process that imports Streamlit and the pages' modules and analyses 20
   uploads through webapp.analysis (the Diagnose path): embedded vs $CXR_MODEL_URL.
3. Images per second of python -m model.predict over --images validation images, plain and
   --ray (wall time of the whole command, start-up included).
4. Hostile clients, on 127.0.0.1 only: seconds to the 413 of a request announcing 100 MB; the
   latency of a normal request while 70 clients send one byte every 2 s; seconds from SIGTERM
   to the server's process group until it has exited.
Targets (issue 22): sequential p50 <= 120 ms; concurrency 16 >= 1.5x sequential throughput;
client process <= 350 MB after 20 uploads; --ray >= 30 images/s. Issue 27: 413 within 3 s,
the normal request within 5 s, the stop within 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import Request, urlopen

from model.run_dir import DEFAULT_RUN_DIR
from testkit.model_server import REPO_ROOT, TOKEN, model_server
from training.config import CXR4_DATA

CONCURRENCY = (1, 4, 16)
REPLICAS = (1, 2)
UPLOADS = 20
SLOW_CLIENTS = 70
SLOW_BYTE_EVERY_S = 2.0
AUTHORISED = {"Authorization": f"Bearer {TOKEN}"}
MEMORY_SCRIPT = """
import json, sys, psutil
from pathlib import Path
import streamlit
from webapp.analysis import state_for_upload
from webapp.resources import load_predictor, run_dir
predictor = load_predictor(run_dir())
for index, path in enumerate(sys.argv[1:]):
    state = state_for_upload(str(index), Path(path).read_bytes(), Path(path).name, predictor)
print(json.dumps({"rss_mb": psutil.Process().memory_info().rss / 1e6,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def val_files(data: Path, count: int) -> list[Path]:
    """``count`` validation images, the classes interleaved."""
    by_class = [sorted(folder.iterdir()) for folder in sorted((data / "val").iterdir())]
    mixed = [path for group in zip(*by_class, strict=False) for path in group]
    rest = [path for group in by_class for path in group if path not in set(mixed)]
    return (mixed + rest)[:count]


def timed_post(url: str, data: bytes) -> float:
    start = time.perf_counter()
    with urlopen(Request(f"{url}/predict", data=data, headers=AUTHORISED, method="POST"),
                 timeout=300) as answer:
        answer.read()
    return time.perf_counter() - start


def load_test(url: str, bodies: list[bytes], concurrency: int, requests: int) -> dict:
    work = [bodies[index % len(bodies)] for index in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda body: timed_post(url, body), work))
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": requests, "rps": requests / wall,
            "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * percentile(latencies, 0.95)}


def serving_figures(run_dir: Path, files: list[Path], requests: int, work: Path) -> list[dict]:
    bodies = [path.read_bytes() for path in files[:16]]
    rows = []
    for replicas in REPLICAS:
        with model_server(run_dir, None, work / f"serve_{replicas}.log", replicas) as server:
            for body in bodies[:4]:
                timed_post(server.url, body)  # warm-up: every replica's first requests
            for concurrency in CONCURRENCY:
                row = {"replicas": replicas, **load_test(server.url, bodies, concurrency,
                                                         requests)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def memory_figures(run_dir: Path, files: list[Path], work: Path) -> dict:
    uploads = [str(path) for path in files[:UPLOADS]]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "CXR_MODEL_DIR": str(run_dir)}
    env.pop("CXR_MODEL_URL", None)
    figures = {}
    embedded = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *uploads], env=env,
                              cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    figures["embedded"] = json.loads(embedded.stdout.splitlines()[-1])
    with model_server(run_dir, None, work / "serve_memory.log") as server:
        client = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *uploads],
                                env={**env, "CXR_MODEL_URL": server.url,
                                     "CXR_MODEL_TOKEN": TOKEN}, cwd=REPO_ROOT,
                                capture_output=True, text=True, check=True)
    figures["client"] = json.loads(client.stdout.splitlines()[-1])
    print(json.dumps({"app_memory_after_uploads": UPLOADS, **figures}), flush=True)
    return figures


def batch_figures(run_dir: Path, files: list[Path], work: Path) -> dict:
    folder = work / "images"
    folder.mkdir()
    for index, path in enumerate(files):  # links in tmp, so both runs read the same list
        (folder / f"{index:05d}{path.suffix}").symlink_to(path.resolve())
    figures = {"images": len(files)}
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    for name, extra in (("plain", []), ("ray", ["--ray"])):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "model.predict", *extra, "--model",
                               str(run_dir), str(folder)], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
        figures[name] = {"seconds": seconds, "images_per_s": len(files) / seconds,
                         "lines": len(done.stdout.splitlines())}
    print(json.dumps({"batch": figures}), flush=True)
    return figures


def hostile_figures(run_dir: Path, files: list[Path], work: Path) -> dict:
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    with model_server(run_dir, None, work / "serve_hostile.log") as server:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            client.sendall(f"{head}Content-Length: 100000000\r\n\r\n".encode())
            status = client.recv(100).split(b" ")[1].decode()
        figures = {"announced_100mb": {"status": status,
                                       "seconds": time.perf_counter() - started}}
        slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5)
                for _ in range(SLOW_CLIENTS)]
        stop = threading.Event()

        def trickle() -> None:
            for client in slow:
                client.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode())
            for _ in range(10):  # bounded: 20 s at most
                if stop.wait(SLOW_BYTE_EVERY_S):
                    return
                for client in slow:
                    client.sendall(b"\0")

        trickling = threading.Thread(target=trickle)
        trickling.start()
        time.sleep(1.0)
        latencies = [timed_post(server.url, files[index].read_bytes()) for index in range(5)]
        stop.set()
        trickling.join()
        for client in slow:
            client.close()
        figures["while_slow_clients"] = {"clients": SLOW_CLIENTS,
                                         "max_s": max(latencies),
                                         "median_s": statistics.median(latencies)}
        started = time.perf_counter()
        os.killpg(os.getpgid(server.process.pid), signal.SIGTERM)
        figures["group_sigterm"] = {"exit": server.process.wait(timeout=60),
                                    "seconds": time.perf_counter() - started}
    print(json.dumps({"hostile": figures}), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--data", type=Path, default=CXR4_DATA)
    parser.add_argument("--requests", type=int, default=48, help="requests per load level")
    parser.add_argument("--images", type=int, default=200, help="images for the batch runs")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if not (args.data / "val").is_dir():
        print(f"no validation images at {args.data / 'val'}", file=sys.stderr)
        return 2
    files = val_files(args.data, max(args.images, UPLOADS, 16))
    with tempfile.TemporaryDirectory() as work:
        figures = {"serving": serving_figures(args.model, files, args.requests, Path(work)),
                   "app_memory": memory_figures(args.model, files, Path(work)),
                   "batch": batch_figures(args.model, files[:args.images], Path(work)),
                   "hostile": hostile_figures(args.model, files, Path(work)),
                   "load_average": os.getloadavg()}
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
