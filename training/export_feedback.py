"""Radiologist-labelled images as a class-folder data set that `training.train` reads.

    python -m training.export_feedback --out DIR

Writes `DIR/train/<CLASS>/<sha256>.png` for every kept de-identified image (the Users page's
"keep images" setting) that radiologists read, labelled with the class they read. Images whose
readers disagree are left out, and so are readings of images that were not kept; both are
counted. The database is the app's ($CXR_DATABASE_URL, else the data folder's SQLite file).
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path

from records.db import Database, open_database
from records.feedback import labelled_images
from records.image_store import image_path
from records.settings import load_settings

SPLIT = "train"


def export(database: Database, images_dir: Path, out: Path) -> Counter:
    """Copy each labelled, kept image into its class folder; count what was written or left."""
    counts: Counter = Counter()
    for sha256, read_class in labelled_images(database).items():
        source = image_path(images_dir, sha256)
        if read_class is None:
            counts["left out: readers disagree"] += 1
        elif not source.is_file():
            counts["left out: image not kept"] += 1
        else:
            target = out / SPLIT / read_class / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            counts[read_class] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export_feedback",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the data set folder to write")
    arguments = parser.parse_args(argv)
    settings = load_settings()
    database = open_database(settings.database_url, settings.sqlite_busy_seconds)
    counts = export(database, settings.images_dir, arguments.out)
    for name, count in sorted(counts.items()):
        print(f"{name}: {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
