"""External checks of a run: populations it was never trained on, through the gate.

    python -m bench.external_checks RUN_DIR [--external DIR ...] [--sample N] [--out FILE]

Default sets: ../shared/data/kermany_test_a (children, a later batch of the training hospital)
and ../shared/data/lungs (adult normals from a teaching collection in no training set). Prints
one row per set (training.external.format_external); --out writes the figures as JSON, in the
shape of metrics.json's ``external`` key. To record them in a run's metrics.json, use
`python -m training.evaluate --model RUN_DIR --external DIR`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from model.run_dir import write_json
from training.config import SHARED_DATA
from training.evaluate import evaluate_external
from training.external import format_external

DEFAULT_SETS = (SHARED_DATA / "kermany_test_a", SHARED_DATA / "lungs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--external", type=Path, action="append",
                        help="external folder (repeat); default: "
                             + " ".join(map(str, DEFAULT_SETS)))
    parser.add_argument("--sample", type=int, help="at most N images of each set, spread evenly")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    started = time.monotonic()
    external = evaluate_external(args.run_dir, args.external or list(DEFAULT_SETS), args.sample)
    print(format_external(external))
    for name, figures in external.items():
        print(f"{name}: {figures['description']}")
    print(f"{sum(f['n'] for f in external.values())} images in "
          f"{time.monotonic() - started:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, external)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
