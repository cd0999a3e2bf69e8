"""Training and inference turn the same bytes into the same model input: the stretched grey
image (the model normalises it itself, model.normalization)."""

from __future__ import annotations

import numpy as np

from model.decode import decode_image
from model.labels import CLASS_NAMES
from model.preprocess import resize_gray
from tests.synthetic_data import make_dataset
from training.batches import XrayBatches
from training.data import load_split, scan_split


def training_tensor(sample, image_size: int) -> np.ndarray:
    """What the training loop feeds the model for one file (no augmentation)."""
    loaded = load_split([sample], image_size, "parity")
    targets = np.eye(len(CLASS_NAMES), dtype=np.float32)[loaded.labels]
    batch, _ = XrayBatches(loaded.images, targets, 1)[0]
    return batch[0]


def test_synthetic_files_match(tmp_path):
    root = make_dataset(tmp_path, per_class=2, with_val=False)
    for sample in scan_split(root, "train", list(CLASS_NAMES))[:4]:
        expected = resize_gray(decode_image(sample.path.read_bytes()).gray, 64)
        assert np.array_equal(training_tensor(sample, 64), expected)


def test_real_xrays_match(cxr4_dir):
    samples = scan_split(cxr4_dir, "val", list(CLASS_NAMES))
    chosen = [next(s for s in samples if s.label == label) for label in range(4)]
    for sample in chosen:
        expected = resize_gray(decode_image(sample.path.read_bytes()).gray, 224)
        assert expected.shape == (224, 224) and expected.dtype == np.uint8
        assert np.array_equal(training_tensor(sample, 224), expected)
