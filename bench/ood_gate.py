"""How well the out-of-distribution gate tells chest X-rays from everything else, and its cost.

    python -m bench.ood_gate [--model RUN_DIR] [--data DIR ...] [--out FILE]

Prints: the refused fraction of the generated non-X-ray set (testkit/ood_corpus.py), by
category and by the step that refused (DICOM header, pixels, features), and what the feature
distance alone refuses; the refused fraction of the validation chest X-rays in each DIR/val
(by default every training data root); the
latency the gate adds per image (median ms: the pixel checks plus the distance, and
predict() with the gate on minus off). Targets (issue 5): >= 98 % of >= 200 non-X-rays
refused, <= 1 % of val X-rays refused, <= 10 ms added.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model.decode import DecodedImage, decode_file, decode_image
from model.ood import OodGate, Refusal, check_acquisition
from model.predictor import DEFAULT_RUN_DIR, ModelLoadError, Predictor
from model.preprocess import resize_gray
from model.run_dir import OOD_BENCHMARK_FILE, write_json
from testkit.ood_corpus import ood_corpus
from training.config import TrainConfig

LATENCY_IMAGES = 200


def refusal_steps(predictor: Predictor, images: list[DecodedImage], batch_size: int = 32
                  ) -> list[str | None]:
    """The step that refused each image ('header', 'pixels', 'features'), None if accepted:
    the predictor's own decision, read back (``admit`` names the step it refused at; a refusal
    by ``classify`` is the one check after the model, the features)."""
    steps: list[str | None] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        admitted: list = []
        for image in chunk:
            try:
                admitted.append(predictor.admit(image))
            except Refusal as refusal:
                admitted.append(refusal)
        known = [predictor.known_age(image, None) for image in chunk]
        steps.extend(item.step if isinstance(item, Refusal)
                     else None if prediction.refusal is None else "features"
                     for item, prediction in zip(admitted, predictor.classify(admitted, known),
                                                 strict=True))
    return steps


def feature_distances(predictor: Predictor, grays: list[np.ndarray]) -> np.ndarray:
    """The feature distance of every image, ignoring the header and pixel checks."""
    return np.concatenate([
        predictor.ood.distances(predictor.logits_and_features(
            np.stack([predictor.preprocess(gray) for gray in grays[start:start + 64]]))[1])
        for start in range(0, len(grays), 64)
    ])


def median_ms(function, arguments: list) -> float:
    times = []
    for argument in arguments:
        start = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


LATENCY_MARGIN = 0.95  # of the distance limit


def added_latency(predictor: Predictor, images: list[DecodedImage]) -> dict[str, float]:
    """Median ms per image: each gate step alone, and predict() with the gate on minus off.

    ``images`` must be ones the gate accepts: a refusal would end predict() early.
    """
    grays = [image.gray for image in images]
    features = predictor.logits_and_features(np.stack([predictor.preprocess(gray)
                                                        for gray in grays]))[1]
    gate, off = predictor.ood, OodGate.off("benchmark: gate off")
    # Only films clearly inside the limit: one a hair from it can fall either side between a
    # batched and a single-image pass (float rounding), and a refusal is not a timing.
    clear = gate.distances(features) < LATENCY_MARGIN * gate.info["limits"]["max_distance"]
    images = [image for image, keep in zip(images, clear, strict=True) if keep]
    grays, features = [image.gray for image in images], features[clear]
    resized = [resize_gray(gray, predictor.image_size) for gray in grays]
    predictor.predict(grays[0])
    gated_times, ungated_times = [], []
    for gray in grays:  # interleaved, so load from other processes hits both alike
        for predictor.ood, times in ((gate, gated_times), (off, ungated_times)):
            start = time.perf_counter()
            predictor.predict(gray)
            times.append(time.perf_counter() - start)
    predictor.ood = gate
    return {
        "header_check_ms": median_ms(check_acquisition, images),
        "pixel_checks_ms": median_ms(gate.check_pixels, resized),
        "distance_ms": median_ms(gate.check, list(features)),
        "predict_gate_on_ms": 1000 * statistics.median(gated_times),
        "predict_gate_off_ms": 1000 * statistics.median(ungated_times),
        "predict_added_ms": 1000 * statistics.median(
            np.subtract(gated_times, ungated_times).tolist()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR, metavar="RUN_DIR")
    parser.add_argument("--data", type=Path, action="append", metavar="DIR",
                        help="dataset folder with val/<CLASS>/ chest X-rays; repeat for several "
                        "(default: " + " ".join(map(str, TrainConfig().data)) + ")")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here "
                        f"(for the model card: RUN_DIR/{OOD_BENCHMARK_FILE})")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor.load(args.model)
    except ModelLoadError as error:
        parser.error(str(error))
    if not predictor.ood.enabled:
        parser.error(predictor.ood.info["reason"])
    print(f"model {predictor.version}; limits {predictor.ood.info['limits']}")

    corpus = ood_corpus()
    decoded = [decode_image(sample.data, sample.name) for sample in corpus]
    steps = refusal_steps(predictor, decoded)
    categories = Counter(sample.category for sample in corpus)
    refused_by_category = Counter(sample.category for sample, step in zip(corpus, steps,
                                                                          strict=True) if step)
    distances = feature_distances(predictor, [image.gray for image in decoded])
    limit = predictor.ood.info["limits"]["max_distance"]
    non_xray = {
        "images": len(corpus),
        "refused_fraction": sum(step is not None for step in steps) / len(corpus),
        "refused_by_step": dict(Counter(step for step in steps if step)),
        "by_category": {category: f"{refused_by_category[category]}/{count}"
                        for category, count in sorted(categories.items())},
        "features_alone_refused_fraction": float(np.mean(distances > limit)),
        "closest_to_the_limit": [  # the margin: non-X-rays that reached the feature check
            f"{corpus[index].name} {distances[index]:.1f}" for index in np.argsort(distances)
            if steps[index] in ("features", None)][:5],
        "accepted": [sample.name for sample, step in zip(corpus, steps, strict=True) if not step],
    }
    print(f"\nnon-X-ray set: {non_xray['refused_fraction']:.1%} of {len(corpus)} refused "
          f"(by step {non_xray['refused_by_step']}); the feature distance alone refuses "
          f"{non_xray['features_alone_refused_fraction']:.1%}")
    print(f"  by category: {non_xray['by_category']}")
    print(f"  closest to the limit {limit:.1f}: {non_xray['closest_to_the_limit']}")
    print(f"  accepted: {non_xray['accepted']}")

    roots = args.data or list(TrainConfig().data)
    val_paths = [path for root in roots for path in sorted((root / "val").rglob("*.jpg"))]
    val_images = [decode_file(path) for path in val_paths]
    val_steps = refusal_steps(predictor, val_images)
    refused_paths = [path for path, step in zip(val_paths, val_steps, strict=True) if step]
    val = {
        "images": len(val_paths),
        "refused_fraction": len(refused_paths) / len(val_paths),
        "by_root": {root.name: f"{sum(path.is_relative_to(root) for path in refused_paths)}/"
                    f"{sum(path.is_relative_to(root) for path in val_paths)}" for root in roots},
        "refused": [f"{path.parent.name}/{path.name}" for path in refused_paths],
    }
    print(f"\nval chest X-rays: {val['refused_fraction']:.2%} of {len(val_paths)} refused: "
          f"{val['refused']}")

    accepted = [image for image, step in zip(val_images, val_steps, strict=True) if not step]
    latency = added_latency(predictor, accepted[::max(1, len(accepted) // LATENCY_IMAGES)])
    print("\nadded latency per image (median ms): "
          + ", ".join(f"{key} {value:.2f}" for key, value in latency.items()))
    if args.out:
        write_json(args.out, {"model": predictor.version, "non_xray": non_xray, "val": val,
                              "latency": latency})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
