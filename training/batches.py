"""Keras batches from images held in memory: augmentation for training, none for evaluation.

The inputs are the stretched grey images themselves, (N, S, S) uint8: the model normalises them.

Pure NumPy/OpenCV (no tf.data), so the same training code runs under any Keras backend.
"""

from __future__ import annotations

import keras
import numpy as np

from training.augment import augment
from training.config import AugmentConfig


class XrayBatches(keras.utils.PyDataset):
    """(inputs, targets) batches; targets are (N, classes) 0/1 masks of the allowed classes.

    For training (``sampling`` given) each epoch draws ``epoch_size`` images with those
    probabilities, with replacement, and augments every draw anew; for evaluation every image
    comes once, in order.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        augment_config: AugmentConfig | None = None,
        sampling: np.ndarray | None = None,
        epoch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.targets = np.asarray(targets, dtype=np.float32)
        self.batch_size = batch_size
        self.augment_config = augment_config
        self.sampling = sampling
        self.epoch_size = epoch_size or len(images)
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        grays = self.images[rows]
        if self.augment_config is not None:
            grays = np.stack([augment(gray, self.rng, self.augment_config) for gray in grays])
        return grays, self.targets[rows]

    def on_epoch_end(self) -> None:
        if self.sampling is not None:
            self.order = self.rng.choice(len(self.images), self.epoch_size, p=self.sampling)
