"""The lung segmenter at inference: the network that finds the lung fields (model.lung_fields)
on the grey image the classifier sees.

The segmenter ships as its own small run directory (``model/artifacts/lungs/``: files named as
in a classifier's run, model.run_dir, written by ``python -m training.train_lungs``). It is
loaded once and runs as one compiled function on the same (S, S) uint8 image the classifier
reads (model.preprocess), so the outline drawn, the share quoted and the classifier's input are
the same pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from model import normalization  # noqa: F401  (registers the layer load_model meets first)
from model.lung_fields import LungMask, mask_from_probabilities
from model.preprocess import resize_gray
from model.run_dir import (
    HISTORY_FILE,
    METADATA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RunFileError,
    read_json,
    write_json,
)

DEFAULT_LUNGS_DIR = Path(__file__).resolve().parent / "artifacts" / "lungs"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class LungsMetadata:
    image_size: int
    threshold: float
    encoder: str
    weights_source: str
    data_root: str
    train_files: list[str]
    val_files: list[str]
    seed: int
    config: dict
    software: dict
    training_seconds: float
    created_at: str
    git_commit: str
    format_version: int = FORMAT_VERSION


def read_lungs_metadata(run_dir: Path) -> LungsMetadata:
    content = read_json(run_dir / METADATA_FILE)
    if not isinstance(content, dict) or content.get("format_version") != FORMAT_VERSION:
        raise RunFileError(f"{run_dir / METADATA_FILE} is not lung segmenter metadata of "
                           f"format {FORMAT_VERSION}")
    names = {spec.name for spec in dataclasses.fields(LungsMetadata)}
    missing = names - set(content)
    if missing:
        raise RunFileError(f"{run_dir / METADATA_FILE} lacks {sorted(missing)}")
    return LungsMetadata(**{key: content[key] for key in names})


def write_lungs_metadata(run_dir: Path, metadata: LungsMetadata) -> None:
    write_json(run_dir / METADATA_FILE, dataclasses.asdict(metadata))


def write_lungs_history(run_dir: Path, history: list[dict]) -> None:
    write_json(run_dir / HISTORY_FILE, history)


def write_lungs_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    write_json(run_dir / METRICS_FILE, metrics)


def read_lungs_metrics(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / METRICS_FILE)


class LungSegmenter:
    """The shipped segmenter: load once, then ``segment`` any decoded grey image."""

    def __init__(self, model: keras.Model, metadata: LungsMetadata) -> None:
        self.metadata = metadata
        self.image_size = metadata.image_size
        self._forward = tf.function(
            lambda images: model(images, training=False),
            input_signature=[tf.TensorSpec((None, self.image_size, self.image_size), tf.uint8)],
        )

    @classmethod
    def load(cls, run_dir: str | Path = DEFAULT_LUNGS_DIR) -> LungSegmenter:
        run_dir = Path(run_dir)
        metadata = read_lungs_metadata(run_dir)
        model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
        expected = (None, metadata.image_size, metadata.image_size)
        if tuple(model.inputs[0].shape) != expected:
            raise RunFileError(f"{run_dir / MODEL_FILE} takes {tuple(model.inputs[0].shape)}, "
                               f"the metadata says {expected}")
        return cls(model, metadata)

    @classmethod
    def load_if_present(cls, run_dir: str | Path = DEFAULT_LUNGS_DIR) -> LungSegmenter | None:
        """The segmenter, or None where none is shipped (everything else works without it)."""
        return cls.load(run_dir) if (Path(run_dir) / MODEL_FILE).is_file() else None

    def probabilities(self, squares: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 model inputs -> (N, S, S) lung probabilities."""
        return self._forward(tf.convert_to_tensor(squares, tf.uint8)).numpy()

    def segment(self, gray: np.ndarray) -> LungMask:
        """A decoded grey image (any size, or already the model's square) -> its lung fields."""
        square = resize_gray(gray, self.image_size)
        return mask_from_probabilities(self.probabilities(square[None])[0], self.metadata.threshold)

    def warm_up(self) -> None:
        self.probabilities(np.full((1, self.image_size, self.image_size), 128, np.uint8))


@functools.cache
def shipped_segmenter() -> LungSegmenter | None:
    """The segmenter in model/artifacts/lungs, loaded once per process; None where none ships."""
    return LungSegmenter.load_if_present(DEFAULT_LUNGS_DIR)
