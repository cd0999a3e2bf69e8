"""Serve the model over HTTP on Ray Serve until SIGINT or SIGTERM.

    CXR_MODEL_TOKEN=... python -m serving --port PORT [--host HOST] [--replicas N] [--model RUN_DIR]

Starts a local Ray cluster, its own ports on loopback only, or joins the one $RAY_ADDRESS names
(then only this application is removed on exit, the cluster and its other applications stay).
HTTP is answered by serving.front in this process, which requires the token from
$CXR_MODEL_TOKEN; without one the server starts on a loopback address only. SIGTERM or SIGINT,
to this process or its whole process group (as systemd, Docker and Kubernetes send it), stops
it within seconds with nothing left running. Exit 0 after a clean stop, 1 when the model cannot
be served, 2 on usage errors. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
import threading
import time
from pathlib import Path

from model.errors import ModelLoadError
from model.run_dir import DEFAULT_RUN_DIR, RunFileError, read_metadata
from records.settings import MODEL_TOKEN_ENV, load_settings
from serving.front import Front

APP_NAME = "cxr-model"
# Ray's own switch for a one-machine cluster: its node address, and so every port of its
# processes (GCS, raylets, workers, agents, metrics), becomes loopback.
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Ray's C++ core would otherwise take SIGTERM in this process, print a stack and die by it.
NO_FAILURE_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"
RAY_STOP_S = 6.0  # removing the application from a joined cluster
REAP_S = 3.0  # this command's processes (a local cluster): SIGTERM, then SIGKILL after this


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving",
                                     description="Serve the chest X-ray model over HTTP (Ray).")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all, "
                             f"which needs ${MODEL_TOKEN_ENV})")
    parser.add_argument("--replicas", type=int, default=1, metavar="N",
                        help="copies of the model, one CPU each (default: 1)")
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR, metavar="RUN_DIR",
                        help="run directory (default: the shipped model in model/artifacts)")
    parser.add_argument("--num-cpus", type=int, metavar="N",
                        help="CPUs of the local cluster (default: all; ignored with RAY_ADDRESS)")
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return False


class StopSignal:
    """SIGINT or SIGTERM, remembered from the moment the handlers are installed (so one that
    comes during start-up stops the server too), and awaitable once it serves."""

    def __init__(self) -> None:
        self.number: int | None = None
        self.received = threading.Event()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number: int, _frame) -> None:
        self.number = self.number or number
        self.received.set()
        if self._wake is not None:
            loop, event = self._wake
            loop.call_soon_threadsafe(event.set)

    async def wait(self) -> None:
        event = asyncio.Event()
        self._wake = (asyncio.get_running_loop(), event)
        if not self.received.is_set():
            await event.wait()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value in (("--replicas", args.replicas), ("--num-cpus", args.num_cpus)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    token = load_settings().model_token
    if token is None and not is_loopback(args.host):
        parser.error(f"--host {args.host} is reachable from other machines: set "
                     f"${MODEL_TOKEN_ENV} to a long random secret (the app sends the same) "
                     "before serving there")
    try:
        version = read_metadata(args.model).version
    except (RunFileError, OSError) as error:
        parser.error(f"{args.model} is not a run directory: {error}")
    stop = StopSignal()
    joined = bool(os.environ.get("RAY_ADDRESS"))
    if not joined:
        os.environ.update(LOOPBACK_RAY)  # before Ray is imported: it reads the switch then
    _import_ray_keeping_our_signals()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    startup = Startup()
    # Start-up runs beside this thread, which only waits, so that a signal during it is taken
    # at once instead of being held behind a replica loading TensorFlow. That thread lives until
    # the stop: Ray ties its processes' lives to the thread that started them.
    threading.Thread(target=startup.run, args=(args, joined), daemon=True).start()
    while not (startup.ready.is_set() or stop.received.wait(0.2)):
        pass
    if startup.error is not None:
        print(f"error: the model cannot be served: {startup.error}", file=sys.stderr)
        _stop(joined, startup)
        return 1
    if not stop.received.is_set():
        asyncio.run(_serve(Front(startup.backend, token), args, version, stop))
    began = time.perf_counter()
    _stop(joined, startup)
    print(f"stopped on {signal.Signals(stop.number).name} in "
          f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    return 0


def _import_ray_keeping_our_signals() -> None:
    """Import Ray with its failure signal handler off in this process only (Ray reads the
    switch on import); the cluster's processes keep theirs."""
    os.environ[NO_FAILURE_HANDLER] = "1"
    try:
        import ray  # noqa: F401
    finally:
        del os.environ[NO_FAILURE_HANDLER]


class Startup:
    """Ray, then the replicas, on a thread that waits for the stop once they are ready."""

    def __init__(self) -> None:
        self.ready, self.released = threading.Event(), threading.Event()
        self.backend = None
        self.error: Exception | None = None

    def run(self, args: argparse.Namespace, joined: bool) -> None:
        import ray
        from ray import serve

        from serving.deployment import Replicas, build

        try:
            if joined:
                ray.init()
            else:
                ray.init(num_cpus=args.num_cpus, include_dashboard=False)
            serve.start(proxy_location="Disabled")  # serving.front answers HTTP
            handle = serve.run(build(args.model.resolve(), args.replicas), name=APP_NAME,
                               route_prefix=None)
            self.backend = Replicas(handle)
        except (ModelLoadError, RuntimeError) as error:  # a replica that cannot load the model
            self.error = error
        self.ready.set()
        self.released.wait()


async def _serve(front: Front, args: argparse.Namespace, version: str, stop: StopSignal
                 ) -> None:
    server = await front.listen(args.host, args.port)
    print(f"serving model {version} with {args.replicas} replica(s) on "
          f"http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    await stop.wait()
    await front.close(server)


def _stop(joined: bool, startup: Startup) -> None:
    """Remove what this command started: the application from a joined cluster, or the whole
    local cluster, within seconds even when its processes got the same signal (a process group's
    SIGTERM) and Ray's own shutdown would wait on the ones already gone."""
    import psutil

    if joined:
        stopping = threading.Thread(target=_delete_application, daemon=True)
        stopping.start()
        stopping.join(RAY_STOP_S)
    ours = psutil.Process().children(recursive=True)
    for end, wait_s in ((psutil.Process.terminate, REAP_S), (psutil.Process.kill, 1.0)):
        for process in ours:
            with contextlib.suppress(psutil.NoSuchProcess):
                end(process)
        _, ours = psutil.wait_procs(ours, timeout=wait_s)
    startup.released.set()


def _delete_application() -> None:
    import ray
    from ray import serve

    serve.delete(APP_NAME)
    ray.shutdown()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # Ray's exit hooks may wait on a cluster already stopped above
