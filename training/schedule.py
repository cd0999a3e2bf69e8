"""The two-stage transfer-learning schedule, following the Keras transfer-learning guide.

Stage 1 ("frozen"): the ImageNet backbone is frozen (BatchNorm in inference mode) and only the
new head learns. Stage 2 ("finetune"): the backbone (or its top N blocks) is unfrozen and the
whole network is trained again with a learning rate 10-100x smaller. Each stage stops early on
validation loss and restores its best weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from model.run_dir import CHECKPOINTS_DIR
from training.backbones import BackboneSpec
from training.classifier import freeze_backbone, unfreeze_backbone
from training.config import TrainConfig
from training.losses import SetCrossEntropy, accuracy_metric

log = logging.getLogger(__name__)


class HistoryRecorder(keras.callbacks.Callback):
    """Per-epoch records of both stages, with the learning rate actually in use."""

    def __init__(self, stage: str, records: list[dict]) -> None:
        super().__init__()
        self.stage = stage
        self.records = records

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        record = {
            "stage": self.stage,
            "epoch": epoch + 1,
            **{key: float(logs[key]) for key in ("loss", "accuracy", "val_loss", "val_accuracy")
               if key in logs},
            "learning_rate": float(np.asarray(self.model.optimizer.learning_rate)),
        }
        self.records.append(record)
        log.info("%s epoch %d: %s", self.stage, epoch + 1,
                 ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)))


class ProgressBar(keras.callbacks.Callback):
    """A tqdm bar per epoch on stderr, batch by batch, so a log file shows progress too.

    Keras' own bar only draws on a terminal; in a background job's log it would print nothing
    until an epoch (minutes on a CPU) ends.
    """

    def __init__(self, stage: str, last_epoch: int) -> None:
        super().__init__()
        self.stage = stage
        self.last_epoch = last_epoch
        self._bar: tqdm | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._bar = tqdm(total=self.params.get("steps"), unit="batch", mininterval=2.0,
                         desc=f"{self.stage} epoch {epoch + 1}/{self.last_epoch}")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._bar.set_postfix({key: f"{logs[key]:.3f}" for key in ("loss", "accuracy")
                               if key in (logs or {})}, refresh=False)
        self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._bar.close()


def compile_for_stage(model: keras.Model, config: TrainConfig, stage: str) -> None:
    """(Re)compile after (un)freezing: a new optimiser at the stage's learning rate."""
    learning_rate = config.lr_frozen if stage == "frozen" else config.lr_finetune
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=SetCrossEntropy(label_smoothing=config.label_smoothing),
        metrics=[accuracy_metric()],
    )


def _fit_stage(
    model: keras.Model, stage: str, first_epoch: int, epochs: int, train, val,
    config: TrainConfig, run_dir: Path, records: list[dict],
) -> None:
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.reduce_lr_factor,
            patience=config.reduce_lr_patience, min_lr=1e-7,
        ),
        keras.callbacks.ModelCheckpoint(
            run_dir / CHECKPOINTS_DIR / f"{stage}.keras", monitor="val_loss", save_best_only=True
        ),
        HistoryRecorder(stage, records),
        ProgressBar(stage, first_epoch + epochs),
    ]
    log.info("stage %s: %d epoch(s), learning rate %g", stage, epochs,
             float(np.asarray(model.optimizer.learning_rate)))
    model.fit(
        train, validation_data=val, initial_epoch=first_epoch, epochs=first_epoch + epochs,
        callbacks=callbacks, verbose=0,
    )


def run_two_stage(
    model: keras.Model, spec: BackboneSpec, train, val, config: TrainConfig, run_dir: Path,
) -> list[dict]:
    """Train in place; returns the per-epoch history of both stages."""
    (run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    freeze_backbone(model)
    compile_for_stage(model, config, "frozen")
    if config.epochs_frozen > 0:
        _fit_stage(model, "frozen", 0, config.epochs_frozen, train, val,
                   config, run_dir, records)
    if config.epochs_finetune > 0:
        unfrozen = unfreeze_backbone(model, spec, config.finetune_blocks)
        log.info("stage finetune: %d backbone layers unfrozen (BatchNorm stays frozen)", unfrozen)
        compile_for_stage(model, config, "finetune")
        _fit_stage(model, "finetune", len(records), config.epochs_finetune, train, val,
                   config, run_dir, records)
    return records
