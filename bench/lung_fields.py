"""Should "no lung field found" refuse an image? The lung share the segmenter finds on real
chest films of every shared set and on the non-chest-X-ray corpus, against the model's gate.

    python -m bench.lung_fields [--per-set 150] [--out FILE]

For each set: how many images, how many the classifier accepts (its header, pixel and feature
checks), the lung share (min, 1st and 5th percentile, median) and how many fall under
model.lung_fields.MIN_LUNG_FRACTION ("no lung field"), among all and among the accepted. Prints the
figures; --out also writes them as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from model.decode import IMAGE_SUFFIXES, decode_file, decode_image
from model.errors import ImageError
from model.lung_fields import MIN_LUNG_FRACTION
from model.lungs import LungSegmenter
from model.predictor import Predictor
from model.run_dir import write_json
from testkit.ood_corpus import ood_corpus
from training.config import SHARED_DATA

REAL_SETS = {"cxr4 val": SHARED_DATA / "cxr4" / "val", "adult val": SHARED_DATA / "adult" / "val",
             "kermany_test_a": SHARED_DATA / "kermany_test_a",
             "lungs": SHARED_DATA / "lungs" / "images"}


def sample(folder: Path, count: int, seed: int) -> list[Path]:
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    rng = np.random.default_rng(seed)
    return [files[index] for index in sorted(rng.permutation(len(files))[:count])]


def accepted(predictor: Predictor, image) -> bool:
    try:
        admitted = predictor.admit(image)
    except ImageError:
        return False
    return predictor.classify([admitted])[0].refusal is None


def figures(fractions: list[float], gate: list[bool]) -> dict:
    values, gate = np.array(fractions), np.array(gate)
    missing = values < MIN_LUNG_FRACTION
    return {"n": len(values), "accepted": int(gate.sum()), "no_lung_field": int(missing.sum()),
            "no_lung_field_among_accepted": int((missing & gate).sum()),
            "lung_share_min": round(float(values.min()), 4),
            "lung_share_p1": round(float(np.percentile(values, 1)), 4),
            "lung_share_p5": round(float(np.percentile(values, 5)), 4),
            "lung_share_median": round(float(np.median(values)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=150)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    predictor, segmenter = Predictor.load(), LungSegmenter.load()
    results = {}
    for name, folder in REAL_SETS.items():
        if not folder.is_dir():
            print(f"{name}: not found at {folder}, skipped")
            continue
        images = [decode_file(path) for path in sample(folder, args.per_set, 0)]
        results[name] = figures([segmenter.segment(image.gray).fraction for image in images],
                                [accepted(predictor, image) for image in images])
    corpus = []
    for item in ood_corpus():
        try:
            corpus.append(decode_image(item.data, item.name))
        except ImageError:
            continue  # refused at decoding: never reaches the segmenter
    results["not chest X-rays (testkit.ood_corpus, decodable)"] = figures(
        [segmenter.segment(image.gray).fraction for image in corpus],
        [accepted(predictor, image) for image in corpus])
    print(f"{'set':48} {'n':>4} {'acc':>4} {'no lungs':>8} {'(acc)':>5} {'min':>6} {'p1':>6} "
          f"{'p5':>6} {'median':>6}")
    for name, row in results.items():
        print(f"{name:48} {row['n']:4} {row['accepted']:4} {row['no_lung_field']:8} "
              f"{row['no_lung_field_among_accepted']:5} {row['lung_share_min']:6.3f} "
              f"{row['lung_share_p1']:6.3f} {row['lung_share_p5']:6.3f} "
              f"{row['lung_share_median']:6.3f}")
    if args.out:
        write_json(args.out, {"min_lung_fraction": MIN_LUNG_FRACTION, "sets": results})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
