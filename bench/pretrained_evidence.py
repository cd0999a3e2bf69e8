"""Evidence that the ImageNet weights are real: a short run with them against one without.

    python -m bench.pretrained_evidence [--data DIR] [--out runs/evidence]

Trains `--limit-per-class 100 --epochs-frozen 1 --epochs-finetune 0` twice (efficientnet_lite0,
`--weights imagenet` and `--weights none`) and prints each run's val pneumonia-vs-normal AUC,
4-class accuracy and wall time. The target: AUC >= 0.95 with ImageNet, clearly above random.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from model.run_metrics import read_metrics
from training.config import CXR4_DATA

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=CXR4_DATA,
                        help=f"labelled data folder (default: {CXR4_DATA})")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "evidence")
    args = parser.parse_args()
    for weights in ("imagenet", "none"):
        run_dir = args.out / weights
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "training.train", "--data", str(args.data), "--out",
             str(run_dir), "--weights", weights, "--limit-per-class", "100",
             "--epochs-frozen", "1", "--epochs-finetune", "0"],
            cwd=REPO, check=True, capture_output=True,
        )
        metrics = read_metrics(run_dir)
        print(f"weights={weights}: pneumonia-vs-normal AUC "
              f"{metrics.pneumonia_vs_normal.auc:.3f}, 4-class accuracy "
              f"{metrics.accuracy:.3f}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
