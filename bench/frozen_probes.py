"""Frozen-feature probes: which design to fine-tune, judged on the external checks.

    python -m bench.frozen_probes [--variants plain heq clahe] [--external DIR ...]
        [--cache-dir runs/probes] [--out runs/frozen_probes.json]

A fine-tuning run takes over an hour on this CPU; a probe takes minutes. For each intensity
variant of the one preprocessing path (plain; histogram equalisation or CLAHE of the resized
grey image), a softmax head is trained on frozen ImageNet EfficientNet-Lite0 features of the
train splits of cxr4 + adult (the loss, label sets and sampling weights of training.train),
either one shared head or age heads (model.populations: one block per age group, each image's
target in its own block). Every head is scored on the val splits, per age group, and on the
external checks, which are never fitted on: normal recall, called COVID-19 among non-COVID,
pneumonia-vs-normal AUC and accuracy. Age heads read the known age group on val and, as for a
JPEG upload with no header, their own estimate on the external sets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from bench.leave_one_source_out import cached_features, fit_head, load_all
from model.age_groups import AGE_GROUPS
from model.populations import block_targets, class_logits
from training.config import SHARED_DATA, TrainConfig
from training.data import LoadedSplit, sampling_weights
from training.external import accepted_figures, load_external

DEFAULTS = TrainConfig()
CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
VARIANTS = {
    "plain": lambda gray: gray,
    "heq": cv2.equalizeHist,
    "clahe": CLAHE.apply,
}
EXTERNAL = (SHARED_DATA / "kermany_test_a", SHARED_DATA / "lungs")


def varied(split: LoadedSplit, variant: str) -> LoadedSplit:
    """The same images through one intensity variant (applied to the resized grey image)."""
    images = np.stack([VARIANTS[variant](image) for image in split.images])
    return LoadedSplit(images, split.labels, split.paths, split.sources, split.age_groups)


def probabilities(head, features: np.ndarray, populations: np.ndarray | None) -> np.ndarray:
    """The head's class probabilities, read per age group (or marginalised) for age heads."""
    joint = head.predict(features, verbose=0)
    if populations is None:
        return joint
    logits = np.log(np.clip(joint, 1e-12, 1.0))
    read = np.asarray(class_logits(logits, populations, len(AGE_GROUPS),
                                   joint.shape[1] // len(AGE_GROUPS)))
    read = np.exp(read - read.max(axis=1, keepdims=True))
    return read / read.sum(axis=1, keepdims=True)


def probe(variant: str, heads: bool, data: dict) -> dict:
    """Train one head on the train rows; figures on val per age group and on each external."""
    space, labels, features = data["space"], data["labels"], data["features"]
    train = ~data["is_val"]
    allowed = space.masks()[labels]
    groups = np.array([AGE_GROUPS.index(group) for group in data["age_groups"]])
    targets = block_targets(allowed, groups, len(AGE_GROUPS)) if heads else allowed
    weights = sampling_weights(labels[train], [data["sources"][i] for i in
                                               np.flatnonzero(train)], space,
                               DEFAULTS.class_weighting, DEFAULTS.source_balance)
    head = fit_head(features[train], targets[train].astype(np.float32), weights)
    row = {"variant": variant, "heads": "age heads" if heads else "one head"}
    for index, group in enumerate(AGE_GROUPS):
        rows = data["is_val"] & (groups == index)
        known = np.full(rows.sum(), index) if heads else None
        row[f"val {group}"] = accepted_figures(labels[rows],
                                               probabilities(head, features[rows], known), space)
    for name, (ext_features, ext_labels) in data["external"].items():
        unknown = np.full(len(ext_labels), -1) if heads else None
        row[name] = accepted_figures(ext_labels, probabilities(head, ext_features, unknown),
                                     space)
    return row


def _cell(figures: dict, key: str) -> str:
    value = figures.get(key)
    return "n/a" if value is None else f"{value:.2f}"


def print_table(rows: list[dict], sets: list[str]) -> None:
    keys = ("normal_recall", "called_covid_among_non_covid", "pneumonia_vs_normal_auc")
    header = " | ".join(f"{name}: normal / COVID-19 / AUC" for name in sets)
    print(f"| variant | head | {header} |")
    print("|---|---|" + "---|" * len(sets))
    for row in rows:
        cells = " | ".join(" / ".join(_cell(row[name], key) for key in keys) for name in sets)
        print(f"| {row['variant']} | {row['heads']} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--external", type=Path, action="append",
                        help="external folder (repeat); default: " + " ".join(map(str, EXTERNAL)))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/probes"))
    parser.add_argument("--out", type=Path, default=Path("runs/frozen_probes.json"))
    args = parser.parse_args()
    loaded, is_val, space = load_all(list(DEFAULTS.data))
    size = loaded.images.shape[1]
    externals = {folder.name: load_external(folder, space, size)
                 for folder in args.external or EXTERNAL}
    rows = []
    for variant in args.variants:
        data = {"space": space, "labels": loaded.labels, "sources": list(loaded.sources),
                "age_groups": list(loaded.age_groups), "is_val": is_val,
                "features": cached_features(varied(loaded, variant),
                                            args.cache_dir / f"{variant}.npz"),
                "external": {name: (cached_features(varied(split, variant),
                                                    args.cache_dir / f"{variant}_{name}.npz"),
                                    split.labels)
                             for name, split in externals.items()}}
        rows += [probe(variant, heads, data) for heads in (False, True)]
    print_table(rows, ["val adult", "val pediatric", *externals])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
