"""Real validation X-rays that the served model accepts, for browser benchmarks."""

from __future__ import annotations

from pathlib import Path

from model.decode import decode_file
from model.errors import ImageError
from model.labels import CLASS_NAMES
from model.predictor import Predictor


def distinct_xrays(data_dir: Path, count: int, run_dir: Path) -> list[Path]:
    """``count`` different validation X-rays that the served model accepts, the classes in turn.

    The few its out-of-distribution gate refuses (0.5 % of val) get a message, not a result,
    so they cannot time upload-to-result; they are left out and named.
    """
    predictor = Predictor.load(run_dir)
    per_class = [sorted((data_dir / "val" / name).glob("*.jpg")) for name in CLASS_NAMES]
    accepted = []
    for path in (path for group in zip(*per_class, strict=False) for path in group):
        try:
            predictor.predict(decode_file(path))  # the app's own decision, header included
        except ImageError as refusal:
            print(f"left out {path.name}: {refusal}")
            continue
        accepted.append(path)
        if len(accepted) == count:
            return accepted
    raise SystemExit(f"only {len(accepted)} accepted X-rays in {data_dir / 'val'}; need {count}")
