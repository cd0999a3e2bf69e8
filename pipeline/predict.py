"""Classify X-ray files, or a PACS's chest studies, from the command line: JSON lines on stdout.

    python -m model.predict PATH [PATH ...] [--model RUN_DIR] [--batch-size N]
                            [--lung-masks DIR]
    python -m model.predict --pacs URL [--since YYYYMMDD] [--until YYYYMMDD]
                            [--body-part PART] [--send-results] [--model RUN_DIR]
    python -m model.predict --ray PATH [PATH ...] | --ray --pacs URL ...   (Ray Data)

Folders are searched recursively for image files. Each line is either
{"file", "label", "probabilities", "model"} (with a model that has age heads, also
"age_group": "adult" or "child", "age_group_source": "dicom", "given" or "estimated", and for
an estimate "age_group_probability", "age_group_notes" where the age was contradictory or
impossible (sentences for a reader) and "age_group_not_assessed": the classes that group's head
was never trained on, whose probability is then 0; "validated_at_site": the site the model was
validated at, or null for a model validated at no site, e.g. the shipped one
(model.site_validation); with a
run that has a feature bank, "familiar", experimental: whether the film looks like those the
model was trained or adapted on, model.familiarity, measured neither to flag unseen sites nor
to mark likely errors) or, for a
file that cannot be used or that the model's out-of-distribution gate refuses (not a chest
X-ray), {"file", "error"} saying why; the run goes on. With --lung-masks DIR (needs the
shipped lung segmenter, model/lungs.py), each accepted image's lung mask is written as
DIR/<file name without suffix>.png (its own size, 255 lung, 0 elsewhere) and its line gains
"heat_in_lungs": the share of the predicted class's map inside the lungs (0..1; null when no
lung field is found). With --pacs (login and the other settings from the CXR_PACS_* variables,
see pacs.settings) each line also has opaque "study" and "series" keys and "file" is the
image's opaque key (null on a study's own error line, e.g. a lateral-only study); with
--send-results, "stored" is true or the archive's error. Exit 0 once everything was
processed, 1 when the PACS cannot be searched (unreachable, login refused), 2 on usage errors.
Logs go to stderr so stdout stays machine-readable.

``python -m model.predict`` runs this module (the name tools call); ``python -m
pipeline.predict`` is the same CLI. PACS mode imports pacs/ only when it is asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from model.batch import Classified, classify
from model.decode import collect_files, decode_file

if TYPE_CHECKING:
    from model.predictor import Predictor
    from pacs.client import PacsClient
    from pacs.studies import StudyQuery

SEND_THREADS = 2  # results stored while the next images are analysed


def predict_files(files: list[Path], predictor: Predictor, batch_size: int, out: TextIO,
                  age_group: str | None = None, lung_masks: Path | None = None) -> None:
    """Write one JSON line per file, in order: the prediction or the reason it was refused.

    The predictor decides (``admit``, then ``classify``), exactly as for the app.
    With ``lung_masks``, accepted images also get their mask file and ``heat_in_lungs``.
    """
    for outcome in classify(files, decode_file, predictor, batch_size, age_group=age_group):
        extra = {}
        if lung_masks is not None and outcome.prediction.refusal is None:
            extra = {"heat_in_lungs": write_lung_mask(outcome, predictor, lung_masks,
                                                      age_group)}
        write_record({"file": str(outcome.item)}, outcome, out, **extra)


def write_lung_mask(outcome: Classified, predictor: Predictor, folder: Path,
                    age_group: str | None = None) -> float | None:
    """Save an accepted image's lung mask as a PNG named after it; its heat share in the lungs."""
    from PIL import Image

    from model.lung_fields import explain_in_lungs
    from model.lungs import shipped_segmenter

    _, attention = explain_in_lungs(predictor, shipped_segmenter(), outcome.image,
                                    age_group=age_group)
    mask = attention.lungs.png_levels(outcome.image.gray.shape)
    Image.fromarray(mask).save(folder / f"{Path(outcome.item).stem}.png")
    return attention.heat_in_lungs


def write_record(where: dict, outcome: Classified, out: TextIO,
                 **extra: object) -> None:
    """One JSON line: ``where`` (the file, or the PACS keys), then the result or the error."""
    out.write(json.dumps({**where, **outcome.prediction.json_fields(), **extra}) + "\n")
    out.flush()


def _study_date(text: str) -> str:
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYYMMDD, got {text!r}") from None
    return text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.predict",
        description="Classify chest X-ray files; prints one JSON object per line.",
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="image files or folders (searched recursively)")
    pacs = parser.add_argument_group("PACS mode (instead of PATHs)")
    pacs.add_argument("--pacs", metavar="URL",
                      help="DICOMweb root of the archive; login from CXR_PACS_USER/PASSWORD/TOKEN")
    pacs.add_argument("--since", type=_study_date, metavar="YYYYMMDD",
                      help="studies on or after this date")
    pacs.add_argument("--until", type=_study_date, metavar="YYYYMMDD",
                      help="studies on or before this date")
    pacs.add_argument("--body-part", metavar="PART",
                      help="only images whose BodyPartExamined is PART (when they name one)")
    pacs.add_argument("--send-results", action="store_true",
                      help="store a Structured Report and a heatmap image in each study")
    parser.add_argument("--model", type=Path, metavar="RUN_DIR",
                        help="run directory (default: the shipped model in model/artifacts)")
    parser.add_argument("--lung-masks", type=Path, metavar="DIR",
                        help="write each accepted image's lung mask here and add heat_in_lungs")
    parser.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                        help="images per model call (default: 32)")
    parser.add_argument("--age-group", choices=("adult", "child", "auto"), default="auto",
                        help="the patients' age group, for every image; auto (default): each "
                             "DICOM header's age, else the model's estimate")
    parser.add_argument("--ray", action="store_true",
                        help="run on Ray Data: the cluster $RAY_ADDRESS names, else a local one "
                             "(same lines, same order; see pipeline.ray_data)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    pacs_only = [flag for flag, given in (("--since", args.since), ("--until", args.until),
                 ("--body-part", args.body_part), ("--send-results", args.send_results)) if given]
    if args.pacs and args.paths:
        parser.error("give image PATHs or --pacs URL, not both")
    if pacs_only and not args.pacs:
        parser.error(f"{', '.join(pacs_only)} only apply with --pacs")
    if args.lung_masks and args.pacs:
        parser.error("--lung-masks applies to image PATHs, not --pacs")
    if not args.pacs and not args.paths:
        parser.error("give at least one image PATH, or --pacs URL")
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.ray:
        from pipeline.ray_data import run_cli

        return run_cli(args, parser)
    with contextlib.redirect_stdout(sys.stderr):  # nothing but JSON lines on stdout
        from model.predictor import DEFAULT_RUN_DIR, ModelLoadError, Predictor

        try:
            predictor = Predictor.load(args.model or DEFAULT_RUN_DIR)
        except ModelLoadError as error:
            parser.error(str(error))
        if args.lung_masks:
            from model.lungs import shipped_segmenter

            if shipped_segmenter() is None:
                parser.error("--lung-masks needs the lung segmenter in model/artifacts/lungs")
            args.lung_masks.mkdir(parents=True, exist_ok=True)
    if not predictor.ood.enabled:
        print(f"warning: {predictor.ood.info['reason']}", file=sys.stderr)
    if args.pacs:
        return predict_pacs(args, predictor)
    files = collect_files(args.paths)
    if not files:
        print("no image files found", file=sys.stderr)
    predict_files(files, predictor, args.batch_size, sys.stdout, args.age_group,
                  args.lung_masks)
    return 0


def predict_pacs(args: argparse.Namespace, predictor: Predictor) -> int:
    """PACS mode: 1 with a message when the archive cannot be searched, else 0."""
    from pacs.client import PacsClient
    from pacs.errors import PacsError
    from pacs.settings import settings_for
    from pacs.studies import StudyQuery

    query = StudyQuery(args.since, args.until, args.body_part)
    try:
        client = PacsClient(settings_for(args.pacs))
        predict_studies(client, query, predictor, args.batch_size, args.send_results, sys.stdout,
                        args.age_group)
    except PacsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def predict_studies(client: PacsClient, query: StudyQuery, predictor: Predictor,
                    batch_size: int, send_results: bool, out: TextIO,
                    age_group: str | None = None) -> None:
    """One line per frontal image of each listed study, or per study without one; with
    ``send_results`` each analysed image's SR and heatmap are stored in its study, in a few
    threads so the archive's answers overlap the next images' work; lines stay in order.

    Raises PacsError when the archive cannot be searched (unreachable, login refused).
    """
    from model.lungs import shipped_segmenter
    from pacs.errors import PacsError
    from pacs.results import send_results as store_results
    from pacs.studies import ImageRef
    from pacs.triage import keys, triage, work_items

    def store(outcome: Classified) -> bool | str:
        try:
            store_results(client, outcome.item, outcome.image, outcome.prediction, predictor,
                          shipped_segmenter())
            return True
        except PacsError as error:
            return str(error)

    def write(outcome: Classified, stored: Future | None) -> None:
        extra = {} if stored is None else {"stored": stored.result()}
        write_record(keys(outcome.item), outcome, out, **extra)

    items = work_items(client, query)
    if not items:
        print("no chest radiograph studies found", file=sys.stderr)
    pending: deque[tuple[Classified, Future | None]] = deque()
    with ThreadPoolExecutor(SEND_THREADS) as pool:
        for outcome in triage(client, items, predictor, batch_size, age_group):
            sendable = (send_results and outcome.prediction.refusal is None
                        and isinstance(outcome.item, ImageRef))
            pending.append((outcome, pool.submit(store, outcome) if sendable else None))
            while pending and (len(pending) > batch_size or pending[0][1] is None
                               or pending[0][1].done()):
                write(*pending.popleft())
        while pending:
            write(*pending.popleft())


if __name__ == "__main__":
    sys.exit(main())
