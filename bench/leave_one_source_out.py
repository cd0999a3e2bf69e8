"""Leave one source out: our stand-in for a hidden test set from hospitals we have never seen.

    python -m bench.leave_one_source_out [--data DIR ...] [--source-balance 0 0.5 1]
        [--cache runs/loso_features.npz] [--out runs/loso.json]

For every source (a manifest's patient-id namespace: kermany, rsna, nih, bimcv, ieee8023,
figure1, actualmed), a head is trained on frozen ImageNet EfficientNet-Lite0 features of the
*other* sources' train splits (same label sets, class and source sampling weights and loss as
training.train), then scored on every image of the left-out source. An out-of-distribution gate
(class Gaussians on those features, limit set as training.fit_ood does) says how many of the
unseen source's real X-rays it would refuse. A second row per source, "seen", trains on every
source's train split and scores the source's val split: the gap between the two is what the
source taught the model that does not carry over.

Frozen features are a floor, not the shipped model: the point is the comparison between rows
and between --source-balance settings, which tells which shortcut defences help on sources a
model has not seen. Features are cached, so later runs take seconds.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import keras
import numpy as np

from model.normalization import normalization_layer
from model.predictor import Predictor
from training.backbones import get_backbone
from training.config import TrainConfig
from training.data import (
    LabelSpace,
    LoadedSplit,
    find_label_space,
    load_split,
    sampling_weights,
    scan_split,
)
from training.fit_ood import (
    DEFAULT_REFUSED_FRACTION,
    fit_gaussians,
    pooled_features,
    source_balanced_threshold,
)
from training.losses import SetCrossEntropy
from training.metrics import subgroup_metrics

DEFAULTS = TrainConfig()
HEAD_EPOCHS = 30


def load_all(roots: list[Path]) -> tuple[LoadedSplit, np.ndarray, LabelSpace]:
    """Every image of every root (train and val), with a flag for the val split."""
    space = find_label_space(roots, "train", DEFAULTS.label_set_map())
    pediatric = DEFAULTS.pediatric_sources.split(",")
    samples, is_val = [], []
    for root in roots:
        for split in ("train", "val"):
            found = scan_split(root, split, space, pediatric)
            samples += found
            is_val += [split == "val"] * len(found)
    loaded = load_split(samples, get_backbone("efficientnet_lite0").default_size, "all")
    kept = {path: flag for path, flag in zip((s.path for s in samples), is_val, strict=True)}
    return loaded, np.array([kept[path] for path in loaded.paths]), space


def frozen_features(images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Pooled ImageNet Lite0 features of (N, S, S) uint8 images: where the model starts from."""
    spec = get_backbone("efficientnet_lite0")
    gray = keras.Input((spec.default_size, spec.default_size), dtype="uint8")
    features, _ = spec.build(normalization_layer(spec.normalization)(gray), "imagenet")
    model = keras.Model(gray, keras.layers.GlobalAveragePooling2D()(features))
    return model.predict(images, batch_size=batch_size, verbose=0)


def run_features(run_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The pooled features of a trained run's own model (its gate's features)."""
    return partial(pooled_features, Predictor.load(run_dir))


def cached_features(loaded: LoadedSplit, cache: Path,
                    extract: Callable[[np.ndarray], np.ndarray] = frozen_features) -> np.ndarray:
    names = np.array([str(path) for path in loaded.paths])
    if cache.is_file():
        with np.load(cache) as stored:
            if np.array_equal(stored["paths"], names):
                return stored["features"]
    features = extract(loaded.images)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=names, features=features)
    return features


def fit_head(features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
             seed: int = 0) -> keras.Model:
    """A softmax layer on standardised features, trained with the set likelihood and weights."""
    keras.utils.set_random_seed(seed)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    inputs = keras.Input((features.shape[1],))
    scaled = keras.layers.Rescaling(1 / std, offset=-mean / std)(inputs)
    outputs = keras.layers.Dense(targets.shape[1], activation="softmax",
                                 kernel_regularizer=keras.regularizers.l2(1e-3))(scaled)
    head = keras.Model(inputs, outputs)
    head.compile(optimizer=keras.optimizers.Adam(3e-3),
                 loss=SetCrossEntropy(DEFAULTS.label_smoothing))
    head.fit(features, targets, sample_weight=weights * len(weights), batch_size=256,
             epochs=HEAD_EPOCHS, verbose=0)
    return head


def score(train: np.ndarray, test: np.ndarray, data: dict, balance: float) -> dict:
    """Train a head on rows ``train``, score rows ``test``; the gate as training.fit_ood does
    (Gaussians on the train rows, the limit on val rows that are not scored)."""
    space, labels, features = data["space"], data["labels"], data["features"]
    sources = [data["sources"][i] for i in np.flatnonzero(train)]
    weights = sampling_weights(labels[train], sources, space, DEFAULTS.class_weighting, balance)
    head = fit_head(features[train], space.masks()[labels[train]].astype(np.float32), weights)
    probabilities = head.predict(features[test], verbose=0)
    figures = subgroup_metrics(labels[test], probabilities, space.keys,
                               space.masks()[labels[test]], space.classes)
    present, compact = np.unique(labels[train], return_inverse=True)
    gaussians, _ = fit_gaussians(features[train], compact, present.size)
    limit_rows = data["is_val"] & ~test  # as training.fit_ood: val X-rays, none being scored
    limit = source_balanced_threshold(gaussians.distances(features[limit_rows]),
                                      [data["sources"][i] for i in np.flatnonzero(limit_rows)],
                                      DEFAULT_REFUSED_FRACTION)
    figures["gate_refused"] = float(np.mean(gaussians.distances(features[test]) > limit))
    return figures


def _cell(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.2f}"


def print_table(rows: list[dict]) -> None:
    print("| balance | source (age) | rows | n | accuracy | recall by label | called COVID-19 "
          "among non-COVID | pneumonia-vs-normal AUC | gate refused |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        recall = ", ".join(f"{name} {value:.2f}" for name, value in row["recall"].items())
        print(f"| {row['balance']:g} | {row['source']} ({row['age_group']}) | {row['rows']} | "
              f"{row['n']} | {row['accuracy']:.3f} | {recall} | "
              f"{_cell(row.get('called_covid_among_non_covid'))} | "
              f"{_cell(row.get('pneumonia_vs_normal_auc'))} | {row['gate_refused']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="data root (repeat); "
                        "default: " + " ".join(map(str, DEFAULTS.data)))
    parser.add_argument("--source-balance", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--cache", type=Path, default=Path("runs/loso_features.npz"))
    parser.add_argument("--features-from", type=Path, metavar="RUN_DIR",
                        help="use this run's own pooled features instead of frozen ImageNet "
                             "ones (pass a --cache of its own): its backbone has seen every "
                             "source, so only the head and the gate are fitted without one; "
                             "an optimistic bound for that run's gate on a new hospital")
    parser.add_argument("--out", type=Path, default=Path("runs/loso.json"))
    args = parser.parse_args()
    roots = args.data or list(DEFAULTS.data)
    loaded, is_val, space = load_all(roots)
    extract = run_features(args.features_from) if args.features_from else frozen_features
    data = {"space": space, "labels": loaded.labels, "sources": list(loaded.sources),
            "is_val": is_val, "features": cached_features(loaded, args.cache, extract)}
    sources = np.array(loaded.sources)
    age_of = dict(zip(loaded.sources, loaded.age_groups, strict=True))
    rows = []
    for balance in args.source_balance:
        for source in sorted(set(loaded.sources)):
            held_out = sources == source
            for kind, train, test in (("unseen", ~held_out & ~is_val, held_out),
                                      ("seen", ~is_val, held_out & is_val)):
                if test.any():
                    rows.append({"balance": balance, "source": source, "rows": kind,
                                 "age_group": age_of[source], **score(train, test, data, balance)})
    print_table(rows)
    for balance in args.source_balance:
        unseen = [row for row in rows if row["balance"] == balance and row["rows"] == "unseen"]
        covid = [row["called_covid_among_non_covid"] for row in unseen
                 if row.get("called_covid_among_non_covid") is not None]
        aucs = [row["pneumonia_vs_normal_auc"] for row in unseen
                if row.get("pneumonia_vs_normal_auc") is not None]
        print(f"source balance {balance:g}, unseen sources: mean accuracy "
              f"{np.mean([row['accuracy'] for row in unseen]):.3f}, mean called COVID-19 among "
              f"non-COVID {np.mean(covid):.3f}, mean pneumonia-vs-normal AUC {np.mean(aucs):.3f}, "
              f"mean gate refused {np.mean([row['gate_refused'] for row in unseen]):.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
