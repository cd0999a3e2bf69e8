"""Keras batches from images held in memory: augmentation for training, none for evaluation.

Pure NumPy/OpenCV (no tf.data), so the same training code runs under any Keras backend.
"""

from __future__ import annotations

import keras
import numpy as np

from model.preprocess import to_model_input
from training.augment import augment
from training.config import AugmentConfig


class XrayBatches(keras.utils.PyDataset):
    """(inputs, one-hot labels) batches; reshuffled and re-augmented every epoch when training."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        normalization: str,
        batch_size: int,
        augment_config: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.one_hot = np.eye(n_classes, dtype=np.float32)[labels]
        self.normalization = normalization
        self.batch_size = batch_size
        self.augment_config = augment_config
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        if augment_config is not None:
            self.rng.shuffle(self.order)

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        grays = self.images[rows]
        if self.augment_config is not None:
            grays = [augment(gray, self.rng, self.augment_config) for gray in grays]
        inputs = np.stack([to_model_input(gray, self.normalization) for gray in grays])
        return inputs, self.one_hot[rows]

    def on_epoch_end(self) -> None:
        if self.augment_config is not None:
            self.rng.shuffle(self.order)
