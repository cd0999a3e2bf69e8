"""Training and inference turn the same file into the same model input: the stretched grey
image (the model normalises it itself, model.normalization).

Each side is reached through its own entry point, so a change on either path fails here:
inference through ``Predictor.admit`` (the one accept/refuse path of the app, the CLI and the
Worklist), training through ``training.data.load_split`` and the ``XrayBatches`` the fit reads.
"""

from __future__ import annotations

import numpy as np
import pytest

from model.decode import decode_image
from model.labels import CLASS_NAMES
from model.predictor import Predictor
from testkit.model_factory import make_run_dir, shipped_run_dir
from testkit.synthetic_data import make_dataset
from training.batches import XrayBatches
from training.data import Sample, load_split, scan_split


def training_input(sample: Sample, image_size: int) -> np.ndarray:
    """What the training loop feeds the model for one file (no augmentation)."""
    loaded = load_split([sample], image_size, "parity")
    targets = np.eye(len(CLASS_NAMES), dtype=np.float32)[loaded.labels]
    batch, _ = XrayBatches(loaded.images, targets, 1)[0]
    return batch[0]


def inference_input(sample: Sample, predictor: Predictor) -> np.ndarray:
    """What the predictor feeds the model for the same file's bytes, as an upload."""
    return predictor.admit(decode_image(sample.path.read_bytes(), sample.path.name))


def assert_same_inputs(samples: list[Sample], predictor: Predictor) -> None:
    for sample in samples:
        admitted = inference_input(sample, predictor)
        assert admitted.shape == (predictor.image_size,) * 2 and admitted.dtype == np.uint8
        np.testing.assert_array_equal(training_input(sample, predictor.image_size), admitted,
                                      err_msg=str(sample.path))


def test_synthetic_files_reach_the_model_identically(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=2, with_val=False)
    predictor = Predictor.load(make_run_dir(tmp_path / "run"))
    assert_same_inputs(scan_split(root, "train", list(CLASS_NAMES))[:4], predictor)


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.load(shipped_run_dir())


def test_real_xrays_reach_the_shipped_model_identically(cxr4_dir, shipped):
    samples = scan_split(cxr4_dir, "val", list(CLASS_NAMES))
    chosen = [next(sample for sample in samples if sample.label == label) for label in range(4)]
    assert_same_inputs(chosen, shipped)
