"""Train a chest X-ray classifier by two-stage transfer learning and write a run directory.

    python -m training.train --data DIR [--data DIR ...] --out RUN_DIR [--backbone NAME]
        [--weights imagenet|none|PATH|RUN_DIR|FILE.weights.h5] [--epochs-frozen N]
        [--epochs-finetune N] [--image-size N] [--batch-size N] [--limit-per-class N]
        [--distribute mirrored]

Every field of training.config.TrainConfig is a flag (`--help` lists them). The run directory
gets the files model.run_dir names: the model, its metadata, history, calibration, metrics and
the training log. `--weights RUN_DIR` (or a backbone that `python -m training.export_backbone`
wrote) starts from a trained run's fine-tuned backbone instead of ImageNet, with a new head
(training.base_model).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

import keras
import numpy as np

from model.age_groups import AGE_GROUPS
from model.populations import block_targets, class_logits
from model.run_dir import (
    MODEL_FILE,
    TRAIN_LOG_FILE,
    Metadata,
    Preprocessing,
    read_metadata,
    write_history,
    write_metadata,
)
from training.artifacts import git_commit, log_to, model_version, now_utc, software_versions
from training.backbones import BackboneWeightsError, get_backbone
from training.base_model import copy_backbone_weights, trained_backbone
from training.batches import XrayBatches
from training.classifier import build_classifier
from training.config import TrainConfig, build_parser, config_from_args
from training.data import (
    DatasetError,
    LabelSpace,
    LoadedSplit,
    find_label_space,
    limit_per_class,
    load_split,
    sampling_weights,
    scan_split,
    split_by_patient,
)
from training.evaluate import calibrate_and_score
from training.metrics import format_summary
from training.schedule import (
    average_epochs,
    interpolate_with_frozen_stage,
    load_best_checkpoint,
    run_model_weights,
    run_two_stage,
    soup_with,
)

log = logging.getLogger("training")


def distribution_scope(kind: str):
    """A tf.distribute scope for --distribute; TensorFlow backend only."""
    if kind == "none":
        return contextlib.nullcontext()
    if keras.backend.backend() != "tensorflow":
        raise ValueError("--distribute needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    import tensorflow as tf

    strategies = {
        "mirrored": tf.distribute.MirroredStrategy,
        "multiworker": tf.distribute.MultiWorkerMirroredStrategy,
    }
    if kind not in strategies:
        raise ValueError(f"--distribute must be one of none, {', '.join(strategies)}")
    return strategies[kind]().scope()


def _splits(config: TrainConfig, space: LabelSpace):
    """Train and val samples of every data root, each root's patient split kept."""
    pediatric = [name.strip() for name in config.pediatric_sources.split(",") if name.strip()]
    train, val = [], []
    for root in config.data:
        root_train = scan_split(root, "train", space, pediatric)
        if (root / "val").is_dir():
            root_val = scan_split(root, "val", space, pediatric)
        else:
            log.info("%s has no val/ folder: holding out %.0f%% of patients", root,
                     100 * config.val_fraction)
            root_train, root_val = split_by_patient(root_train, config.val_fraction, config.seed)
        train += root_train
        val += root_val
    # The limit makes quick runs; validation stays whole so their figures stay comparable.
    return limit_per_class(train, config.limit_per_class, config.seed), val


def _population_indices(split: LoadedSplit, age_heads: list[str]) -> np.ndarray:
    return np.array([age_heads.index(group) for group in split.age_groups])


def _targets(split: LoadedSplit, space: LabelSpace, age_heads: list[str] | None) -> np.ndarray:
    """Each image's allowed classes; with age heads, in its own age group's block only."""
    allowed = space.masks()[split.labels]
    if not age_heads:
        return allowed
    return block_targets(allowed, _population_indices(split, age_heads), len(age_heads))


def _earlier_seconds(config: TrainConfig, history: list[dict]) -> float:
    """The interrupted process's training time, when this one only finishes the run."""
    return history[-1].get("elapsed_seconds", 0.0) if config.finish_from_checkpoint else 0.0


def train(config: TrainConfig) -> dict:
    """Run the whole pipeline; returns the validation metrics."""
    started = time.monotonic()
    if not 0.0 <= config.wise_alpha <= 1.0:
        raise ValueError(f"--wise-alpha must lie in [0, 1], not {config.wise_alpha}")
    keras.utils.set_random_seed(config.seed)
    spec = get_backbone(config.backbone)
    base = trained_backbone(config.weights)
    if base and base.contract["backbone"] != spec.name:
        raise BackboneWeightsError(f"{base.location} holds a {base.contract['backbone']} "
                                   f"backbone; pass --backbone {base.contract['backbone']}")
    # A trained backbone's features were learnt at its size: the default keeps it.
    image_size = config.image_size or (base.contract["image_size"] if base
                                       else spec.default_size)
    space = find_label_space(config.data, "train", config.label_set_map())
    classes = list(space.classes)
    train_samples, val_samples = _splits(config, space)
    train_split = load_split(train_samples, image_size, "train")
    val_split = load_split(val_samples, image_size, "val")
    log.info("train %s, val %s", train_split.populations(space.keys),
             val_split.populations(space.keys))
    sampling = sampling_weights(train_split.labels, train_split.sources, space,
                                config.class_weighting, config.source_balance)

    age_heads = list(AGE_GROUPS) if config.age_heads else None
    with distribution_scope(config.distribute):
        model, weights_source = build_classifier(
            spec, "none" if base else config.weights, image_size,
            len(classes) * len(age_heads or [None]), config.dropout,
        )
        if base:
            copied = copy_backbone_weights(base, model)
            weights_source = base.source
            log.info("backbone weights of %d layers from %s", copied, weights_source)
        train_batches = XrayBatches(
            train_split.images, _targets(train_split, space, age_heads), config.batch_size,
            config.augment, sampling=sampling,
            epoch_size=config.samples_per_epoch, seed=config.seed,
        )
        val_batches = XrayBatches(val_split.images, _targets(val_split, space, age_heads),
                                  config.batch_size)
        if config.finish_from_checkpoint:
            history = load_best_checkpoint(model, config.out)
        else:
            history = run_two_stage(model, spec, train_batches, val_batches, config, config.out,
                                    started)
        finetuned = any(record["stage"] == "finetune" for record in history)
        if config.finetune_soup and finetuned:
            average_epochs(model, config.out, config.finetune_soup)
        if config.wise_alpha < 1 and finetuned:
            interpolate_with_frozen_stage(model, config.out, config.wise_alpha)
        soup_runs = config.soup_runs()
        if soup_runs:
            soup_with(model, {run: run_model_weights(run) for run in soup_runs})

    created_at = now_utc()
    # A fresh, uncompiled wrapper of the same layers: the file holds no optimiser state.
    keras.Model(model.inputs, model.outputs, name=model.name).save(config.out / MODEL_FILE)
    write_history(config.out, history)
    write_metadata(config.out, Metadata(
        version=model_version(spec.name, created_at, [root.name for root in config.data]),
        classes=tuple(classes),
        label_sets={name: list(members) for name, members in space.sets},
        image_size=image_size,
        preprocessing=Preprocessing(normalization=spec.normalization),
        backbone=spec.name,
        weights_source=weights_source,
        gradcam_layer=spec.gradcam_layer,
        logits_layer="logits",
        age_heads=age_heads,
        dataset={"train": train_split.counts(space.keys), "val": val_split.counts(space.keys)},
        data_roots=[str(root) for root in config.data],
        populations={"train": train_split.populations(space.keys),
                     "val": val_split.populations(space.keys)},
        seed=config.seed,
        config=config.to_dict(),
        software=software_versions(),
        training_seconds=round(time.monotonic() - started + _earlier_seconds(config, history),
                               1),
        created_at=created_at.isoformat(),
        git_commit=git_commit(),
        souped_with=[read_metadata(run).version for run in soup_runs] or None,
    ))
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    val_logits = logits_model.predict(val_batches, verbose=0)
    if age_heads:
        # Scored and calibrated as the app uses a film whose age group is known.
        val_logits = np.asarray(class_logits(val_logits, _population_indices(val_split, age_heads),
                                             len(age_heads), len(classes)))
    metrics = calibrate_and_score(config.out, val_logits, val_split, space)
    log.info("validation:\n%s", format_summary(metrics))
    minutes = (time.monotonic() - started) / 60
    log.info("finished in %.1f min; run directory %s", minutes, config.out)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__.splitlines()[0])
    config = config_from_args(parser.parse_args(argv))
    for root in config.data:
        if not (root / "train").is_dir():
            parser.error(f"{root} has no train/ folder (expected {root}/train/<CLASS>/)")
    log_to(config.out / TRAIN_LOG_FILE)
    try:
        train(config)
    except (DatasetError, BackboneWeightsError, ValueError, FileNotFoundError) as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
