"""How well the site check (training.site_check, model.shift) works, on real films.

    python -m bench.site_check [--model RUN_DIR] [--data ../shared/data] [--draws 10]

Prints, for the run: the false-flag rate on batches of the training sources' held-out val films
(cxr4 and adult val, without the films in the feature bank) at 50, 100 and 200 films; the power
(share of batches flagged) on lungs/ (a hospital in no training set) and kermany_test_a/ (a later
batch of a training hospital) at 50, 100 and 200 films; the power on 200-film batches of val
films mixed with 10 %, 25 % and 50 % lungs/ films; and the seconds of a whole check of 250 films
(decode, model, test) through training.site_check. Batches are drawn seeded; each film's
features are computed once through the product's path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from model.decode import collect_files
from model.predictor import Predictor
from model.run_dir import DEFAULT_RUN_DIR
from model.shift import ShiftCheck
from model.shift_films import accepted_features, path_loaders
from training.config import SHARED_DATA
from training.feature_bank import FeatureBank
from training.site_check import site_check

SIZES = (50, 100, 200)
SHARES = (0.10, 0.25, 0.50)
MIXED_SIZE = 200


def not_in_bank(features: np.ndarray, bank: FeatureBank) -> np.ndarray:
    """The val films whose features are not (to float16 rounding) a bank film's."""
    banked = bank.features[bank.splits == "val"].astype(np.float32)
    nearest = np.array([np.min(np.sum((banked - row) ** 2, axis=1)) for row in features])
    return features[nearest > 1e-3]


def flagged_share(check: ShiftCheck, films: np.ndarray, size: int, draws: int,
                  rng: np.random.Generator, thresholds: dict[int, float]) -> float:
    threshold = thresholds.setdefault(size, check.threshold(size))
    scores = [check.score_projected(check.project(films[rng.choice(len(films), size,
                                                                     replace=False)]))
              for _ in range(draws)]
    return float(np.mean(np.array(scores) > threshold))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--draws", type=int, default=10, help="batches per figure")
    args = parser.parse_args()
    predictor, bank = Predictor.load(args.model), FeatureBank.load(args.model)
    check = ShiftCheck.from_bank(bank)
    val_paths = [args.data / root / "val" for root in ("cxr4", "adult")]
    val = not_in_bank(accepted_features(predictor, path_loaders(val_paths))[0], bank)
    unseen = {name: accepted_features(predictor, path_loaders([args.data / name]))[0]
              for name in ("lungs", "kermany_test_a")}
    rng, thresholds = np.random.default_rng(7), {}
    print(f"{predictor.version}: {len(val)} held-out val films, "
          + ", ".join(f"{name} {len(films)}" for name, films in unseen.items()))
    print("| films | threshold | val flagged | lungs flagged | kermany_test_a flagged |")
    print("|---|---|---|---|---|")
    for size in SIZES:
        cells = [flagged_share(check, films, size, args.draws, rng, thresholds)
                 for films in (val, *unseen.values())]
        print(f"| {size} | {thresholds[size]:.3f} | "
              + " | ".join(f"{cell:.0%}" for cell in cells) + " |")
    print(f"\n| lungs/ share in {MIXED_SIZE} films | flagged |\n|---|---|")
    for share in SHARES:
        mixed = unseen["lungs"]
        count = round(share * MIXED_SIZE)
        scores = []
        for _ in range(args.draws):
            batch = np.vstack([val[rng.choice(len(val), MIXED_SIZE - count, replace=False)],
                               mixed[rng.choice(len(mixed), count, replace=False)]])
            scores.append(check.score_projected(check.project(batch)))
        print(f"| {share:.0%} | {np.mean(np.array(scores) > thresholds[MIXED_SIZE]):.0%} |")
    files = (collect_files([args.data / "lungs"]) + collect_files(val_paths))[:250]
    started = time.perf_counter()
    result = site_check(predictor, bank, files)
    print(f"\nwhole check of {result.n} films (decode, model, test; model loaded): "
          f"{time.perf_counter() - started:.1f} s; {result.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
