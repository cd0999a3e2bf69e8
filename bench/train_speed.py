"""Training throughput of each stage on this machine, in images per second.

    python -m bench.train_speed [--backbone efficientnet_lite0] [--batch-size 32] [--batches 8]

Runs real optimisation steps (augmentation and preprocessing included) on random images:
speed does not depend on the pixels. Prints the median seconds per batch and images/s for the
frozen stage and the fine-tuning stage, and the implied minutes per epoch on cxr4's train split.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from training.backbones import get_backbone
from training.batches import XrayBatches
from training.classifier import build_classifier, freeze_backbone, unfreeze_backbone
from training.config import TrainConfig
from training.schedule import compile_for_stage

CXR4_TRAIN_IMAGES = 4371


def time_stage(model, batches: XrayBatches, n_batches: int) -> list[float]:
    """Seconds per optimisation step, the first (compilation) step excluded."""
    seconds = []
    for index in range(n_batches + 1):
        inputs, targets = batches[index % len(batches)]
        started = time.perf_counter()
        model.train_on_batch(inputs, targets)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="none", help="speed does not depend on the weights")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    config = TrainConfig(batch_size=args.batch_size)
    spec = get_backbone(args.backbone)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size * 4, spec.default_size, spec.default_size),
                          dtype=np.uint8)
    targets = np.eye(4, dtype=np.float32)[np.arange(len(images)) % 4]
    batches = XrayBatches(images, targets, args.batch_size, config.augment)
    model, _ = build_classifier(spec, args.weights, spec.default_size, 4, config.dropout)
    for stage in ("frozen", "finetune"):
        if stage == "frozen":
            freeze_backbone(model)
        else:
            unfreeze_backbone(model, spec, config.finetune_blocks)
        compile_for_stage(model, config, stage)
        seconds = time_stage(model, batches, args.batches)
        median = statistics.median(seconds)
        rate = args.batch_size / median
        print(f"{args.backbone} {stage}: median {median:.3f} s per batch of {args.batch_size}, "
              f"{rate:.1f} images/s, {CXR4_TRAIN_IMAGES / rate / 60:.1f} min per cxr4 epoch")


if __name__ == "__main__":
    main()
