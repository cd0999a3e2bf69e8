"""Batch triage speed, as the Worklist runs it: uploads -> decode, gate, predict, thumbnail.

    python -m bench.worklist_triage [--model RUN_DIR] [--data DIR] [--count N] [--dicom-side PX]

Prints images per second end to end (``webapp.worklist.triage_uploads``; heatmaps are made
only when a row is opened, so none here) for two batches: the val X-rays as uploaded (JPEG
files from DIR/val, or synthetic PNGs without it), and the same X-rays as 16-bit MONOCHROME1
DICOM files upscaled to PX pixels a side, the size a hospital's detector writes. Target:
at least 25 images/s on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from model.predictor import DEFAULT_RUN_DIR, Predictor
from testkit.dicom_factory import make_dicom
from training.config import CXR4_DATA
from webapp.worklist import triage_uploads
from webapp.worklist_uploads import Upload

TARGET = 25.0


def file_uploads(data: Path, count: int) -> list[Upload]:
    files = sorted((data / "val").glob("*/*.jpg")) if (data / "val").is_dir() else []
    if files:
        chosen = [files[index * len(files) // count] for index in range(count)]
        return [Upload(path.name, path.read_bytes()) for path in chosen]
    rng = np.random.default_rng(0)
    uploads = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8)).save(buffer, "PNG")
        uploads.append(Upload(f"synthetic_{index}.png", buffer.getvalue()))
    return uploads


def dicom_uploads(uploads: list[Upload], side: int) -> list[Upload]:
    """Each upload as a 16-bit MONOCHROME1 DICOM of side x side pixels."""
    dicoms = []
    for upload in uploads:
        gray = Image.open(io.BytesIO(upload.data)).convert("L").resize((side, side))
        dicoms.append(Upload(Path(upload.name).stem + ".dcm",
                             make_dicom(np.asarray(gray), bits=16, monochrome1=True)))
    return dicoms


def measure(label: str, uploads: list[Upload], predictor: Predictor) -> float:
    triage_uploads(uploads[:8], predictor)  # warm: the graph and the thread pool
    start = time.perf_counter()
    rows = triage_uploads(uploads, predictor)
    seconds = time.perf_counter() - start
    refused = sum(row.prediction.refusal is not None for row in rows)
    rate = len(rows) / seconds
    verdict = "meets" if rate >= TARGET else "misses"
    print(f"{label}: {len(rows)} images in {seconds:.2f} s = {rate:.1f} images/s "
          f"({refused} refused; {verdict} the {TARGET:.0f} images/s target)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--data", type=Path, default=CXR4_DATA)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--dicom-side", type=int, default=2048)
    args = parser.parse_args()
    predictor = Predictor.load(args.model)
    predictor.warm_up()
    uploads = file_uploads(args.data, args.count)
    measure(f"uploaded files ({args.data.name}/val as stored)", uploads, predictor)
    side = args.dicom_side
    measure(f"16-bit DICOM {side}x{side}", dicom_uploads(uploads[: args.count // 2], side),
            predictor)


if __name__ == "__main__":
    main()
