"""Report files for a test run directory, made by the same functions training uses.

Synthetic but real: metrics from training.metrics on seeded labels and scores, the
calibration from model.calibration, a two-stage history and a model card.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from model.calibration import calibration_report, softmax
from model.labels import CLASS_NAMES
from model.run_dir import (
    MODEL_CARD_FILE,
    read_metadata,
    write_calibration,
    write_history,
    write_metadata,
)
from model.run_metrics import write_metrics
from training.metrics import classification_metrics

FROZEN_EPOCHS = 3
FINETUNE_EPOCHS = 4
MODEL_CARD = "# Model card: test model\n\n## Intended use\nTests only.\n"


def synthetic_scores(n_per_class: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident logits that are right most of the time, and their true labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), n_per_class)
    logits = rng.normal(0.0, 1.0, (labels.size, len(CLASS_NAMES)))
    logits[np.arange(labels.size), labels] += 2.0
    return logits * 3.0, labels


def history_records() -> list[dict]:
    """Per-epoch records as training writes them: a frozen stage, then fine-tuning."""
    records = []
    for epoch in range(1, FROZEN_EPOCHS + FINETUNE_EPOCHS + 1):
        stage = "frozen" if epoch <= FROZEN_EPOCHS else "finetune"
        records.append({
            "stage": stage, "epoch": epoch, "loss": 1.5 / epoch, "accuracy": 1 - 0.6 / epoch,
            "val_loss": 1.6 / epoch, "val_accuracy": 1 - 0.7 / epoch,
            "learning_rate": 1e-3 if stage == "frozen" else 1e-5,
        })
    return records


def write_reports(run_dir: Path, seed: int = 0) -> Path:
    """Add metrics, calibration, history, the card and dataset counts to a factory run dir."""
    logits, labels = synthetic_scores(seed=seed)
    calibration = calibration_report(logits, labels)
    sources = np.where(np.arange(labels.size) % 2 == 0, "hospital_a", "hospital_b")
    ages = np.where(sources == "hospital_a", "adult", "pediatric")
    metrics = classification_metrics(labels, softmax(logits, calibration.temperature),
                                     CLASS_NAMES, groups={"source": sources.tolist(),
                                                          "age_group": ages.tolist()})
    counts = {name: int((labels == index).sum()) for index, name in enumerate(CLASS_NAMES)}
    populations = {split: {
        source: {"age_group": age, "counts": {name: int(scale * ((labels == index) & (
            sources == source)).sum()) for index, name in enumerate(CLASS_NAMES)}}
        for source, age in (("hospital_a", "adult"), ("hospital_b", "pediatric"))
    } for split, scale in (("train", 4), ("val", 1))}
    write_metadata(run_dir, replace(
        read_metadata(run_dir), populations=populations,
        dataset={"train": {name: 4 * count for name, count in counts.items()}, "val": counts}))
    write_metrics(run_dir, metrics)
    write_calibration(run_dir, calibration)
    write_history(run_dir, history_records())
    (run_dir / MODEL_CARD_FILE).write_text(MODEL_CARD)
    return run_dir
