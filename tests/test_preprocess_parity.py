"""Training and inference turn the same bytes into the same tensor."""

from __future__ import annotations

import numpy as np
import pytest

from model.decode import decode_image
from model.labels import CLASS_NAMES
from model.preprocess import NORMALIZATIONS, preprocess
from tests.synthetic_data import make_dataset
from training.batches import XrayBatches
from training.data import load_split, scan_split


def training_tensor(sample, image_size: int, normalization: str) -> np.ndarray:
    """What the training loop feeds the model for one file (no augmentation)."""
    loaded = load_split([sample], image_size, "parity")
    targets = np.eye(len(CLASS_NAMES), dtype=np.float32)[loaded.labels]
    batch, _ = XrayBatches(loaded.images, targets, normalization, 1)[0]
    return batch[0]


@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
def test_synthetic_files_match(tmp_path, normalization):
    root = make_dataset(tmp_path, per_class=2, with_val=False)
    for sample in scan_split(root, "train", list(CLASS_NAMES))[:4]:
        expected = preprocess(decode_image(sample.path.read_bytes()).gray, 64, normalization)
        assert np.array_equal(training_tensor(sample, 64, normalization), expected)


def test_real_xrays_match(cxr4_dir):
    samples = scan_split(cxr4_dir, "val", list(CLASS_NAMES))
    chosen = [next(s for s in samples if s.label == label) for label in range(4)]
    for sample in chosen:
        expected = preprocess(decode_image(sample.path.read_bytes()).gray, 224, "lite0")
        assert expected.shape == (224, 224, 3) and expected.dtype == np.float32
        assert np.array_equal(training_tensor(sample, 224, "lite0"), expected)
