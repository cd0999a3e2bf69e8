"""Serve the model over HTTP on Ray Serve until SIGINT or SIGTERM.

    python -m serving --port PORT [--host HOST] [--replicas N] [--model RUN_DIR]

Starts a local Ray cluster, or joins the one $RAY_ADDRESS names (then only this application
is removed on exit, the cluster and its other applications stay). Exit 0 after a clean stop,
1 when the model cannot be served, 2 on usage errors. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from model.errors import ModelLoadError
from model.run_dir import DEFAULT_RUN_DIR, RunFileError, read_metadata

APP_NAME = "cxr-model"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving",
                                     description="Serve the chest X-ray model over HTTP (Ray).")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--replicas", type=int, default=1, metavar="N",
                        help="copies of the model, one CPU each (default: 1)")
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR, metavar="RUN_DIR",
                        help="run directory (default: the shipped model in model/artifacts)")
    parser.add_argument("--num-cpus", type=int, metavar="N",
                        help="CPUs of the local cluster (default: all; ignored with RAY_ADDRESS)")
    return parser


def wait_for_signal() -> int:
    """Block until SIGINT or SIGTERM; returns the signal's number."""
    received: list[int] = []
    stop = threading.Event()

    def handle(number: int, _frame) -> None:
        received.append(number)
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, handle)
    stop.wait()
    return received[0]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value in (("--replicas", args.replicas), ("--num-cpus", args.num_cpus)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    try:
        version = read_metadata(args.model).version
    except (RunFileError, OSError) as error:
        parser.error(f"{args.model} is not a run directory: {error}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import ray
    from ray import serve

    from serving.deployment import build

    joined = bool(os.environ.get("RAY_ADDRESS"))
    if joined:
        ray.init()
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build(args.model.resolve(), args.replicas), name=APP_NAME, route_prefix="/")
    except (ModelLoadError, RuntimeError) as error:  # a replica that cannot load the model
        print(f"error: the model cannot be served: {error}", file=sys.stderr)
        _stop(joined)
        return 1
    print(f"serving model {version} with {args.replicas} replica(s) on "
          f"http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    number = wait_for_signal()
    started = time.perf_counter()
    _stop(joined)
    print(f"stopped on {signal.Signals(number).name} in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)
    return 0


def _stop(joined: bool) -> None:
    """Remove what this command started: the application, or the whole local cluster."""
    import ray
    from ray import serve

    if joined:
        serve.delete(APP_NAME)
    else:
        serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
