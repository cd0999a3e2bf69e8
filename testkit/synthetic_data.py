"""Small synthetic class-folder datasets for tests: real files, on disk, in the real layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from model.labels import CLASS_NAMES


def synthetic_xray(label: int, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A grayscale image whose bright blob's position depends on the class (learnable)."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    centre_row = height * (0.3 + 0.4 * (label // 2))
    centre_col = width * (0.3 + 0.4 * (label % 2))
    blob = np.exp(-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (0.02 * height * width))
    image = 60 + 150 * blob + rng.normal(0, 12, size)
    return np.clip(image, 0, 255).astype(np.uint8)


def smooth_xray(rng: np.random.Generator, size: tuple[int, int] = (96, 80)) -> np.ndarray:
    """A smooth synthetic radiograph: two dark lung fields in a bright body, mild noise."""
    rows, cols = np.mgrid[0:1:size[0] * 1j, 0:1:size[1] * 1j]
    lungs = sum(np.exp(-((rows - 0.5) ** 2 / 0.06 + (cols - centre) ** 2 / 0.02))
                for centre in (0.3 + rng.uniform(-0.03, 0.03), 0.7 + rng.uniform(-0.03, 0.03)))
    image = 200 - 140 * lungs + rng.normal(0, 2, size)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_dataset(
    root: Path, per_class: int = 6, val_per_class: int = 3, size: tuple[int, int] = (72, 88),
    with_val: bool = True, seed: int = 0,
) -> Path:
    """Write train/ (and val/) class folders of PNG and JPEG files plus a manifest.csv.

    Every second image shares its patient with the one before, so patient grouping matters.
    """
    rng = np.random.default_rng(seed)
    rows = []
    splits = {"train": per_class, "val": val_per_class} if with_val else {"train": per_class}
    for split, count in splits.items():
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                suffix = ".png" if index % 2 else ".jpg"
                path = folder / f"{name.lower()}_{index}{suffix}"
                Image.fromarray(synthetic_xray(label, rng, size)).save(path)
                patient = f"{split}-{name}-{index // 2}"
                rows.append({"file": path.relative_to(root).as_posix(), "label": name,
                             "split": split, "patient_id": patient})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "split", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    return root
