"""``python -m model.predict --ray``: the CLI's work as Ray Data, for archives too big for one
process. The items (files, or a PACS query's images) are listed here; ``map_batches`` sends
them to a pool of actors, each holding one ``Predictor`` and running the CLI's own path
(model.batch.classify, Prediction.json_fields), so each line is what the plain CLI prints, in
the same order. Joins $RAY_ADDRESS when set, else starts a local cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

if TYPE_CHECKING:
    from pacs.settings import PacsSettings
    from pacs.studies import StudyQuery
    from pacs.triage import WorkItem

ACTOR_CPUS = 1  # each actor's TensorFlow uses the threads it finds; Ray reserves one CPU


class _Lines:
    """A Ray Data actor: one Predictor, each batch of item indices -> their JSON lines."""

    def __init__(self, run_dir: str, items: list, pacs_settings: PacsSettings | None,
                 age_group: str | None = None) -> None:
        from model.predictor import Predictor

        self.predictor = Predictor.load(Path(run_dir))
        self.items = items
        self.age_group = age_group
        self.pacs_client = None
        if pacs_settings is not None:
            from pacs.client import PacsClient

            self.pacs_client = PacsClient(pacs_settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chosen = [self.items[index] for index in batch["index"]]
        lines = []
        if self.pacs_client is None:
            from model.batch import classify
            from model.decode import decode_file

            for outcome in classify(chosen, decode_file, self.predictor, len(chosen),
                                    age_group=self.age_group):
                lines.append({"file": str(outcome.item), **outcome.prediction.json_fields()})
        else:
            from pacs.triage import keys, triage

            for outcome in triage(self.pacs_client, chosen, self.predictor, len(chosen),
                                  self.age_group):
                lines.append({**keys(outcome.item), **outcome.prediction.json_fields()})
        return {"line": np.array([json.dumps(line) for line in lines], dtype=object)}


def connect() -> None:
    """Join $RAY_ADDRESS, or start a local cluster (logs to stderr, never stdout)."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


def actor_count() -> int:
    """As many actors as the cluster has free CPUs for, at least one."""
    import ray

    return max(1, int(ray.available_resources().get("CPU", 0) // ACTOR_CPUS))


def classified_lines(items: list, run_dir: Path, batch_size: int,
                     pacs_settings: PacsSettings | None = None,
                     age_group: str | None = None) -> Iterable[str]:
    """Each item's JSON line, in the items' order, computed on the cluster."""
    import ray

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"index": index} for index in range(len(items))])
    lines = dataset.map_batches(
        _Lines, fn_constructor_args=(str(run_dir.resolve()), items, pacs_settings, age_group),
        batch_size=batch_size, batch_format="numpy", concurrency=actor_count(),
        num_cpus=ACTOR_CPUS)
    for batch in lines.iter_batches(batch_format="numpy", batch_size=None):
        yield from batch["line"]


def predict_files(files: list[Path], run_dir: Path, batch_size: int, out: TextIO,
                  age_group: str | None = None) -> None:
    """The plain CLI's lines for ``files``, computed by Ray Data."""
    if not files:
        return
    connect()
    for line in classified_lines(files, run_dir, batch_size, age_group=age_group):
        out.write(line + "\n")
    out.flush()


def predict_pacs(settings: PacsSettings, query: StudyQuery, run_dir: Path, batch_size: int,
                 out: TextIO, age_group: str | None = None) -> None:
    """The plain CLI's PACS lines, computed by Ray Data; the query's images are listed here.

    Raises PacsError when the archive cannot be searched (unreachable, login refused).
    """
    from pacs.client import PacsClient
    from pacs.triage import work_items

    items: list[WorkItem] = work_items(PacsClient(settings), query)
    if not items:
        print("no chest radiograph studies found", file=sys.stderr)
        return
    connect()
    for line in classified_lines(items, run_dir, batch_size, settings, age_group):
        out.write(line + "\n")
    out.flush()


def run_cli(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``python -m model.predict --ray ...``: exit codes as without --ray."""
    from model.decode import collect_files
    from model.run_dir import DEFAULT_RUN_DIR, RunFileError, read_metadata

    run_dir = args.model or DEFAULT_RUN_DIR
    try:
        read_metadata(run_dir)
    except (RunFileError, OSError) as error:
        parser.error(f"{run_dir} is not a run directory: {error}")
    if args.send_results:
        parser.error("--send-results is not available with --ray")
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # Ray's own messages stay off stdout
        if not args.pacs:
            files = collect_files(args.paths)
            if not files:
                print("no image files found", file=sys.stderr)
            predict_files(files, run_dir, args.batch_size, out, args.age_group)
            return 0
        from pacs.errors import PacsError
        from pacs.settings import settings_for
        from pacs.studies import StudyQuery

        try:
            predict_pacs(settings_for(args.pacs),
                         StudyQuery(args.since, args.until, args.body_part),
                         run_dir, args.batch_size, out, args.age_group)
        except PacsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0
