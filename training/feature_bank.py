"""The feature bank: a compact sample of a run's training data as the model sees it, stored in
the run directory, so that a site can be onboarded (training.adapt) and a film judged familiar
or not (model.familiarity) without the training images.

    python -m training.feature_bank --model RUN_DIR [--per-group-train 100] [--per-group-val 50]

For each split (train, val) of the run's data roots (metadata ``data_roots``) it draws at most
N images of each (source, label) pair, seeded, and keeps their pooled features (the input of the
logits layer, float16), label (index into ``keys``: the classes, then the label sets), age group
and source, and its look (model.familiarity: an early layer's channel means, float16, with the
layer's name; banks written before looks existed still load, without them). Subsampling per
source and label keeps every population (a 26-image source as much as a 1,700-image one, up to
N) in a few MB: (1,280 features + 80 looks) x 2 bytes x ~1,250 images ~ 3.4 MB uncompressed.
The backbone is frozen by everything that reads the bank, so its features stay valid for every
run adapted from this one.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.run_dir import (
    FEATURE_BANK_FILE,
    MissingRunFileError,
    RunFileError,
    read_feature_bank,
)
from training.data import DatasetError, LabelSpace, Sample, load_split, scan_split

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger("training.feature_bank")

PER_GROUP = {"train": 100, "val": 50}  # images per (source, label) and split
SPLITS = ("train", "val")
BANK_KEYS = ("features", "labels", "age_groups", "sources", "splits", "keys", "set_names",
             "set_members", "model_version")
LOOK_KEYS = ("looks", "look_layer")  # banks written before looks existed have neither


@dataclass(frozen=True)
class FeatureBank:
    """Pooled features with each image's label, age group, source and split."""

    features: np.ndarray  # (N, D) float16
    labels: np.ndarray  # (N,) int, index into keys
    age_groups: np.ndarray  # (N,) str: "adult" / "pediatric"
    sources: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str: "train", "val", or "site" for a site's adaptation films
    keys: tuple[str, ...]  # the label names: the classes, then the label sets
    sets: dict[str, tuple[str, ...]]  # label set name -> its classes
    model_version: str  # the run whose backbone made the features
    looks: np.ndarray | None = None  # (N, K) float16, model.familiarity; None in older banks
    look_layer: str | None = None  # the layer the looks are channel means of

    @property
    def space(self) -> LabelSpace:
        classes = tuple(key for key in self.keys if key not in self.sets)
        return LabelSpace(classes, tuple((name, self.sets[name]) for name in self.keys
                                         if name in self.sets))

    def part(self, mask: np.ndarray) -> FeatureBank:
        """The images where ``mask`` is true."""
        return FeatureBank(self.features[mask], self.labels[mask], self.age_groups[mask],
                           self.sources[mask], self.splits[mask], self.keys, self.sets,
                           self.model_version,
                           None if self.looks is None else self.looks[mask], self.look_layer)

    def extended(self, features: np.ndarray, labels: np.ndarray, age_groups: list[str],
                 source: str, split: str = "site", looks: np.ndarray | None = None
                 ) -> FeatureBank:
        """This bank plus a site's films (one source), e.g. the films a run was adapted on;
        their ``looks`` join the bank's (so they become familiar) when both have looks."""
        count = len(features)
        joined = (None if self.looks is None or looks is None
                  else np.concatenate([self.looks, np.asarray(looks).astype(np.float16)]))
        return FeatureBank(
            np.concatenate([self.features, features.astype(np.float16)]),
            np.concatenate([self.labels, labels]),
            np.concatenate([self.age_groups, np.array(age_groups, dtype=str)]),
            np.concatenate([self.sources, np.full(count, source)]),
            np.concatenate([self.splits, np.full(count, split)]),
            self.keys, self.sets, self.model_version, joined,
            self.look_layer if joined is not None else None)

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / FEATURE_BANK_FILE
        with path.open("wb") as handle:
            np.savez_compressed(
                handle, features=self.features.astype(np.float16), labels=self.labels,
                age_groups=self.age_groups.astype(str), sources=self.sources.astype(str),
                splits=self.splits.astype(str), keys=np.array(self.keys),
                set_names=np.array(list(self.sets), dtype=str),
                set_members=np.array(["+".join(members) for members in self.sets.values()],
                                     dtype=str),
                model_version=np.array(self.model_version),
                **({} if self.looks is None else {"looks": self.looks.astype(np.float16),
                                                  "look_layer": np.array(self.look_layer)}))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> FeatureBank:
        """The run's bank; RunFileError naming the file when absent or damaged."""
        try:
            arrays = read_feature_bank(run_dir, BANK_KEYS, optional=LOOK_KEYS)
        except MissingRunFileError as error:
            raise RunFileError(f"{error}: write it with "
                               f"`python -m training.feature_bank --model {run_dir}`") from error
        sets = {str(name): tuple(str(members).split("+"))
                for name, members in zip(arrays["set_names"], arrays["set_members"],
                                         strict=True)}
        looks = "looks" in arrays
        return cls(arrays["features"], arrays["labels"].astype(np.int64),
                   arrays["age_groups"], arrays["sources"], arrays["splits"],
                   tuple(str(key) for key in arrays["keys"]), sets,
                   str(arrays["model_version"]),
                   arrays["looks"] if looks else None,
                   str(arrays["look_layer"]) if looks else None)


def features_and_looks(predictor: Predictor, images: np.ndarray, batch_size: int = 32
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S) model inputs -> ((N, D) pooled features, (N, K) looks), one compiled pass
    per batch (K = 0 for a model without a look layer)."""
    if not len(images):
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    parts = [predictor.features_and_looks(images[start:start + batch_size])
             for start in range(0, len(images), batch_size)]
    return (np.concatenate([features for features, _ in parts]),
            np.concatenate([looks for _, looks in parts]))


def subsample(samples: list[Sample], per_group: int, seed: int) -> list[Sample]:
    """At most ``per_group`` samples of each (source, label), drawn reproducibly."""
    groups: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[(sample.source, sample.label)].append(sample)
    rng = random.Random(seed)
    kept: list[Sample] = []
    for key in sorted(groups):
        members = groups[key]
        kept.extend(rng.sample(members, min(per_group, len(members))))
    return kept


def build_bank(predictor: Predictor, roots: list[Path], per_group: dict[str, int],
               seed: int) -> FeatureBank:
    """The bank of a run from its data roots (each with train/ and val/ label folders)."""
    from training.evaluate import model_label_space  # keeps this module light to import

    metadata = predictor.metadata
    pediatric = str(metadata.config.get("pediatric_sources", "kermany")).split(",")
    folders = {entry.name for root in roots for split in SPLITS if (root / split).is_dir()
               for entry in (root / split).iterdir() if entry.is_dir()}
    space = model_label_space(metadata, folders)
    parts = []
    for split in SPLITS:
        samples = [sample for root in roots if (root / split).is_dir()
                   for sample in scan_split(root, split, space, pediatric)]
        chosen = subsample(samples, per_group[split], seed)
        log.info("%s: %d of %d images", split, len(chosen), len(samples))
        loaded = load_split(chosen, predictor.image_size, split)
        parts.append((*features_and_looks(predictor, loaded.images), loaded, split))
    looks = np.concatenate([looks for _, looks, _, _ in parts]).astype(np.float16)
    return FeatureBank(
        np.concatenate([features for features, _, _, _ in parts]).astype(np.float16),
        np.concatenate([loaded.labels for _, _, loaded, _ in parts]),
        np.array([age for _, _, loaded, _ in parts for age in loaded.age_groups], dtype=str),
        np.array([source for _, _, loaded, _ in parts for source in loaded.sources], dtype=str),
        np.array([split for _, _, loaded, split in parts for _ in loaded.labels], dtype=str),
        space.keys, {name: tuple(members) for name, members in space.sets},
        predictor.version, looks if predictor.look_layer else None, predictor.look_layer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, metavar="RUN_DIR",
                        help=f"run directory; {FEATURE_BANK_FILE} is written into it")
    parser.add_argument("--data", type=Path, action="append", metavar="DIR",
                        help="data root with train/ and val/ (repeat; default: the run's "
                             "metadata data_roots)")
    parser.add_argument("--per-group-train", type=int, default=PER_GROUP["train"])
    parser.add_argument("--per-group-val", type=int, default=PER_GROUP["val"])
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from model.predictor import ModelLoadError, Predictor

    try:
        predictor = Predictor.load(args.model)
        roots = args.data or [Path(root) for root in predictor.metadata.data_roots or []]
        if not roots:
            parser.error("the run's metadata names no data_roots: give --data DIR")
        missing = [str(root) for root in roots if not (root / "train").is_dir()]
        if missing:
            parser.error(f"no train/ folder under {', '.join(missing)}")
        bank = build_bank(predictor, roots, {"train": args.per_group_train,
                                             "val": args.per_group_val}, args.seed)
    except (ModelLoadError, DatasetError) as error:
        parser.error(str(error))
    path = bank.save(args.model)
    print(f"wrote {path} ({len(bank.labels)} images, {path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
