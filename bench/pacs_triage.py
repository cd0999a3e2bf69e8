"""The PACS path end to end against a real Orthanc: studies queried, retrieved, analysed, and
their results (SR + heatmap Secondary Capture) stored back, as `model.predict --pacs URL
--send-results` does it (warm model, in process).

    python -m bench.pacs_triage [--model RUN_DIR] [--studies N] [--side PX]

Starts Orthanc (testkit.orthanc) in a temporary folder, stores N single-image chest studies
made from the real val X-rays (16-bit DX and 12-bit MONOCHROME1 CR, PX pixels a side), then
prints the time to list, retrieve and analyse them, and the time with the results sent back.
Target: 100 studies with their SRs stored in at most 30 s.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from model.predictor import DEFAULT_RUN_DIR, Predictor
from pacs.client import PacsClient
from pacs.settings import settings_for
from pacs.studies import StudyQuery
from pipeline.predict import predict_studies
from testkit.orthanc import missing_reason, running_orthanc
from testkit.pacs_studies import PacsArchive, bulk_studies, xray_images
from training.config import CXR4_DATA

TARGET_SECONDS = 30.0


def timed_run(client: PacsClient, predictor: Predictor, send: bool) -> tuple[float, list[dict]]:
    sink = io.StringIO()
    start = time.perf_counter()
    predict_studies(client, StudyQuery(), predictor, 32, send, sink)
    seconds = time.perf_counter() - start
    return seconds, [json.loads(line) for line in sink.getvalue().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--side", type=int, default=1024)
    args = parser.parse_args()
    if missing_reason():
        raise SystemExit(missing_reason())
    xrays = [np.asarray(Image.fromarray(gray).resize((args.side, args.side)))
             for gray in xray_images(CXR4_DATA, 32)]
    studies = bulk_studies(args.studies, xrays)
    predictor = Predictor.load(args.model)
    predictor.warm_up()
    with tempfile.TemporaryDirectory() as folder, running_orthanc(Path(folder)) as orthanc:
        for study in studies:
            for dicom in study.files:
                orthanc.store(dicom)
        archive = PacsArchive(orthanc, studies)
        client = PacsClient(settings_for(orthanc.dicomweb_url, archive.environment()))
        timed_run(client, predictor, send=False)  # warm: the archive's caches, the pools
        seconds, records = timed_run(client, predictor, send=False)
        analysed = sum("label" in record for record in records)
        print(f"{args.studies} studies ({args.side}x{args.side}) queried, retrieved and "
              f"analysed: {seconds:.2f} s ({analysed} analysed, "
              f"{len(records) - analysed} refused)")
        seconds, records = timed_run(client, predictor, send=True)
        stored = sum(record.get("stored") is True for record in records)
        verdict = "meets" if seconds <= TARGET_SECONDS else "misses"
        print(f"... and with the SR and heatmap stored back: {seconds:.2f} s "
              f"({stored} stored; {verdict} the {TARGET_SECONDS:.0f} s target)")


if __name__ == "__main__":
    main()
