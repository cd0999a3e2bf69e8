"""Inference speed of a run directory on this machine, warm, decoding included.

    python -m bench.latency [--model RUN_DIR] [--data DIR] [--repeats 30]
        [--out FILE]

Prints the median and p95 of (1) decode + predict and (2) decode + predict + Grad-CAM for a
2000x2000 JPEG upload, and (3) the throughput of `model.predict`'s batched folder path over the
val split (all 776 images when the real data is present; synthetic images otherwise). With
--out the figures are also written as JSON; the model card quotes them from the run directory
(model.run_dir.LATENCY_FILE).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from model.decode import collect_files, decode_image
from model.labels import COVID
from model.lung_fields import share
from model.lungs import shipped_segmenter
from model.predictor import DEFAULT_RUN_DIR, ModelLoadError, Predictor
from model.run_dir import LATENCY_FILE, write_json
from pipeline.predict import predict_files
from training.config import CXR4_DATA


def large_jpeg(data_dir: Path) -> bytes:
    """A real X-ray scaled up to 2000x2000 (or a synthetic one), as a radiology export would be."""
    sources = sorted((data_dir / "val" / COVID).glob("*.jpg"))
    if sources:
        gray = Image.open(sources[0]).convert("L")
    else:
        rng = np.random.default_rng(0)
        gray = Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8))
    buffer = io.BytesIO()
    gray.resize((2000, 2000), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def timed(action, repeats: int) -> list[float]:
    """Milliseconds per call, after two warm-up calls."""
    action()
    action()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return [1000 * s for s in seconds]


def report(label: str, millis: list[float]) -> dict[str, float]:
    """Print and return the median and p95 of one timing series."""
    figures = {"median_ms": round(statistics.median(millis), 2),
               "p95_ms": round(float(np.percentile(millis, 95)), 2)}
    print(f"{label}: median {figures['median_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms "
          f"(n={len(millis)})")
    return figures


def folder_throughput(predictor: Predictor, data_dir: Path) -> tuple[int, float]:
    """Images per second of the CLI's batched path over a folder (JSON lines to a null sink)."""
    folder = data_dir / "val"
    with tempfile.TemporaryDirectory() as scratch:
        if not folder.is_dir():
            folder = Path(scratch)
            rng = np.random.default_rng(1)
            for index in range(200):
                Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8)).save(
                    folder / f"{index}.png")
        files = collect_files([folder])
        with open("/dev/null", "w") as sink:
            started = time.perf_counter()
            predict_files(files, predictor, batch_size=32, out=sink)
            elapsed = time.perf_counter() - started
    return len(files), len(files) / elapsed


def lung_timings(predictor: Predictor, image, repeats: int) -> dict[str, dict[str, float]]:
    """The lung segmenter alone, and with the share of the heat inside the lungs (the extra
    cost per film of item "heat in lungs"), when a segmenter ships."""
    segmenter = shipped_segmenter()
    if segmenter is None:
        print("no lung segmenter shipped: lung timings skipped")
        return {}
    segmenter.warm_up()
    explanation = predictor.explain(image)
    square = predictor.preprocess(image.gray)
    alone = report("lung segmenter (224 square in, mask out)",
                   timed(lambda: segmenter.segment(square), repeats))
    extra = report("lung segmenter + heat share (per film, extra)", timed(
        lambda: share(segmenter.segment(image.gray), explanation.heatmap,
                      explanation.class_name), repeats))
    return {"lung_segmenter": alone, "lung_segmenter_and_share": extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--data", type=Path, default=CXR4_DATA,
                        help=f"folder with val/<CLASS>/ X-rays (default: {CXR4_DATA})")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here "
                        f"(for the model card: RUN_DIR/{LATENCY_FILE})")
    args = parser.parse_args()
    try:
        predictor = Predictor.load(args.model)
    except ModelLoadError as error:
        parser.error(str(error))
    predictor.warm_up()
    upload = large_jpeg(args.data)
    print(f"model {predictor.version}; upload: 2000x2000 JPEG, {len(upload) / 1e6:.2f} MB")
    predict = report("decode + predict",
                     timed(lambda: predictor.predict(decode_image(upload)), args.repeats))
    explain = report("decode + predict + Grad-CAM",
                     timed(lambda: predictor.explain(decode_image(upload)), args.repeats))
    lungs = lung_timings(predictor, decode_image(upload), args.repeats)
    count, rate = folder_throughput(predictor, args.data)
    print(f"folder throughput (model.predict path, batch 32): {rate:.1f} images/s over {count}")
    if args.out:
        write_json(args.out, {
            "model": predictor.version, "predict": predict, "predict_gradcam": explain,
            "folder_images_per_second": round(rate, 1), "folder_images": count, **lungs})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
