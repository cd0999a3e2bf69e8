"""The two-stage transfer-learning schedule, following the Keras transfer-learning guide.

Stage 1 ("frozen"): the ImageNet backbone is frozen (BatchNorm in inference mode) and only the
new head learns. Stage 2 ("finetune"): the backbone (or its top N blocks) is unfrozen and the
whole network is trained again with a learning rate 10-100x smaller. Each stage stops early on
validation loss and restores its best weights.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from model.run_dir import CHECKPOINTS_DIR, HISTORY_FILE, MODEL_FILE
from training.backbones import BackboneSpec
from training.classifier import freeze_backbone, unfreeze_backbone
from training.config import TrainConfig
from training.losses import SetCrossEntropy, accuracy_metric

log = logging.getLogger(__name__)

# Keras fills in the epoch, counted over both stages.
EPOCH_CHECKPOINT_PATTERN = "finetune-epoch-{epoch:02d}.weights.h5"
EPOCH_CHECKPOINT_GLOB = "finetune-epoch-*.weights.h5"


class HistoryRecorder(keras.callbacks.Callback):
    """Per-epoch records of both stages, with the learning rate actually in use and the time
    since training began; saved beside the checkpoints after every epoch, so an interrupted run
    can still be finished from its best checkpoint (``--finish-from-checkpoint``)."""

    def __init__(self, stage: str, records: list[dict], path: Path, started: float) -> None:
        super().__init__()
        self.stage = stage
        self.records = records
        self.path = path
        self.started = started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        record = {
            "stage": self.stage,
            "epoch": epoch + 1,
            **{key: float(logs[key]) for key in ("loss", "accuracy", "val_loss", "val_accuracy")
               if key in logs},
            "learning_rate": float(np.asarray(self.model.optimizer.learning_rate)),
            "elapsed_seconds": round(time.monotonic() - self.started, 1),
        }
        self.records.append(record)
        self.path.write_text(json.dumps(self.records, indent=2) + "\n")
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
    config: TrainConfig, run_dir: Path, records: list[dict], started: float,
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
            stage_checkpoint(run_dir, stage), monitor="val_loss", save_best_only=True
        ),
        HistoryRecorder(stage, records, checkpoint_history(run_dir), started),
        ProgressBar(stage, first_epoch + epochs),
    ]
    if stage == "finetune":
        # Every epoch's weights, not only the best: the checkpoint soup (--finetune-soup) and
        # bench.robust_finetune's rows along the way are made from them.
        callbacks.append(keras.callbacks.ModelCheckpoint(
            str(run_dir / CHECKPOINTS_DIR / EPOCH_CHECKPOINT_PATTERN), save_weights_only=True))
    log.info("stage %s: %d epoch(s), learning rate %g", stage, epochs,
             float(np.asarray(model.optimizer.learning_rate)))
    model.fit(
        train, validation_data=val, initial_epoch=first_epoch, epochs=first_epoch + epochs,
        callbacks=callbacks, verbose=0,
    )


def checkpoint_history(run_dir: Path) -> Path:
    """Where the per-epoch history is kept while training runs."""
    return run_dir / CHECKPOINTS_DIR / HISTORY_FILE


def load_best_checkpoint(model: keras.Model, run_dir: Path) -> list[dict]:
    """Finish an interrupted run: the best weights of its last stage, and its history so far.

    The same weights early stopping would have restored: each stage's checkpoint keeps its
    lowest-val-loss epoch.
    """
    for stage in ("finetune", "frozen"):
        checkpoint = stage_checkpoint(run_dir, stage)
        if checkpoint.is_file():
            model.set_weights(keras.saving.load_model(checkpoint, compile=False).get_weights())
            log.info("weights from %s", checkpoint)
            return json.loads(checkpoint_history(run_dir).read_text())
    raise FileNotFoundError(f"{run_dir / CHECKPOINTS_DIR} holds no stage checkpoint to finish "
                            "from")


def stage_checkpoint(run_dir: Path, stage: str) -> Path:
    """Where a stage's best weights are kept while training runs (and after, for WiSE-FT)."""
    return run_dir / CHECKPOINTS_DIR / f"{stage}.keras"


def epoch_checkpoints(run_dir: Path) -> list[Path]:
    """The fine-tuning stage's per-epoch weights files, oldest first."""
    return sorted((run_dir / CHECKPOINTS_DIR).glob(EPOCH_CHECKPOINT_GLOB))


def average_epochs(model: keras.Model, run_dir: Path, last: int) -> list[Path]:
    """A uniform checkpoint soup in place (Wortsman et al. ICML 2022; SWA, Izmailov et al.
    2018, at the end of each epoch): every weight becomes the mean of its values after the
    fine-tuning stage's last ``last`` epochs, or all it ran when it stopped sooner (a short or
    early-stopped run). Returns the files averaged.

    Averaging points along one fine-tuning path lands in a flatter region than any one of
    them, which is what tends to carry to data the run never saw.
    """
    files = epoch_checkpoints(run_dir)[-last:]
    if last < 1 or not files:
        raise FileNotFoundError(f"--finetune-soup {last} needs the fine-tuning epochs' weights "
                                f"in {run_dir / CHECKPOINTS_DIR}; found none (a run made before "
                                "they were kept: pass --finetune-soup 0)")
    if len(files) < last:
        log.info("--finetune-soup %d: the stage ran %d epoch(s), all averaged", last, len(files))
    epochs = []
    for file in files:
        model.load_weights(file)
        epochs.append(weights_by_path(model))
    set_mixture(model, epochs, [1.0 / len(epochs)] * len(epochs))
    log.info("checkpoint soup: the mean of %s", ", ".join(file.name for file in files))
    return files


def run_model_weights(run: Path) -> dict[str, np.ndarray]:
    """A run directory's saved model, weights by path (an ingredient of a model soup)."""
    return weights_by_path(keras.saving.load_model(run / MODEL_FILE, compile=False))


def soup_with(model: keras.Model, others: dict[Path, dict[str, np.ndarray]]) -> None:
    """A uniform model soup in place: every weight becomes the mean of its value here and in
    each other run's model (``others``: run directory -> run_model_weights; the same network,
    fine-tuned otherwise from the same ImageNet start), which averages away what each run
    happened to learn of its own path."""
    for run, weights in others.items():
        if not same_network(model, weights):
            raise ValueError(f"{run / MODEL_FILE} is not the same network as this run's")
    ingredients = [weights_by_path(model), *others.values()]
    set_mixture(model, ingredients, [1.0 / len(ingredients)] * len(ingredients))
    log.info("model soup: this run and %s, uniformly", ", ".join(str(run) for run in others))


def weights_by_path(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight of a model by its variable path (layer/name), the same in a checkpoint and
    in the saved model, whatever order their layers are listed in."""
    weights = {variable.path: keras.ops.convert_to_numpy(variable) for variable in model.weights}
    if len(weights) != len(model.weights):
        raise ValueError(f"{model.name} has weights that share a path")
    return weights


def same_network(model: keras.Model, weights: dict[str, np.ndarray]) -> bool:
    """Whether ``weights`` (by path) fit ``model``: the same paths, each of the same shape."""
    return ({variable.path: tuple(variable.shape) for variable in model.weights}
            == {path: tuple(value.shape) for path, value in weights.items()})


def set_mixture(model: keras.Model, ingredients: list[dict[str, np.ndarray]],
                shares: list[float]) -> None:
    """Set every weight of ``model`` to the sum of share x its value in each ingredient: the one
    step behind WiSE-FT, the checkpoint soup and the model soup (callers check the network)."""
    for variable in model.weights:
        variable.assign(sum(share * weights[variable.path]
                            for weights, share in zip(ingredients, shares, strict=True)))


def mix_weights(model: keras.Model, start: dict[str, np.ndarray], end: dict[str, np.ndarray],
                alpha: float) -> None:
    """Set every weight of ``model`` to (1 - alpha) x ``start`` + alpha x ``end``."""
    if not (same_network(model, start) and same_network(model, end)):
        raise ValueError("the two ends of the schedule are not the same network")
    set_mixture(model, [start, end], [1.0 - alpha, alpha])


def interpolate_with_frozen_stage(model: keras.Model, run_dir: Path, alpha: float) -> None:
    """WiSE-FT in place: every weight becomes (1 - alpha) x the end of stage 1 (the run's
    frozen-stage checkpoint) + alpha x its fine-tuned value.

    BatchNorm statistics stay frozen in both stages, so the two ends differ only in what was
    trained and the mixture is a model of the same graph.
    """
    checkpoint = stage_checkpoint(run_dir, "frozen")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--wise-alpha {alpha} needs the end of stage 1 at {checkpoint}")
    frozen = weights_by_path(keras.saving.load_model(checkpoint, compile=False))
    mix_weights(model, frozen, weights_by_path(model), alpha)
    log.info("WiSE-FT: weights = %.2f x end of stage 1 + %.2f x end of stage 2",
             1.0 - alpha, alpha)


def run_two_stage(
    model: keras.Model, spec: BackboneSpec, train, val, config: TrainConfig, run_dir: Path,
    started: float,
) -> list[dict]:
    """Train in place; returns the per-epoch history of both stages."""
    (run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    freeze_backbone(model)
    compile_for_stage(model, config, "frozen")
    if config.epochs_frozen > 0:
        _fit_stage(model, "frozen", 0, config.epochs_frozen, train, val,
                   config, run_dir, records, started)
    if config.epochs_finetune > 0:
        unfrozen = unfreeze_backbone(model, spec, config.finetune_blocks)
        log.info("stage finetune: %d backbone layers unfrozen (BatchNorm stays frozen)", unfrozen)
        compile_for_stage(model, config, "finetune")
        _fit_stage(model, "finetune", len(records), config.epochs_finetune, train, val,
                   config, run_dir, records, started)
    return records
