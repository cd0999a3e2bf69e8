"""A site's films as site adaptation reads them: each film decoded, admitted and gated by the
base model, its pooled features and looks taken in one pass, its patient (manifest.csv's
``patient_id``, else the film itself) and the age block it is read in; and the held-out split,
by patient, that only reports and chooses nothing.

A site that cannot be onboarded as it is raises SiteError, whose message says what to do: an
unknown label folder, films the gate refuses (listed), fewer than MIN_FILMS usable films.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.age_groups import age_group_index
from model.decode import decode_file
from model.errors import ImageError
from training.data import DatasetError, LabelSpace, Sample, split_by_patient
from training.external import MANIFEST, read_external
from training.site_head import head_of_predictor

if TYPE_CHECKING:
    from model.predictor import Predictor

MIN_FILMS = 20
SHOWN_REFUSALS = 10
# --age-group auto: a site whose films are estimated at least this share in one age group is
# that group's: read per film, a few children estimated as adults would move the adults' block
# (docs/RESULTS.md, Site adaptation).
SITE_GROUP_SHARE = 0.9


class SiteError(ValueError):
    """A site folder that cannot be onboarded as it is; the message says what to do."""


@dataclass(frozen=True)
class SiteFilms:
    """A site's usable films as features, with labels (index into ``space.keys``), patients
    and the age-group block each is read in."""

    features: np.ndarray
    labels: np.ndarray
    patients: list[str]
    populations: np.ndarray  # age-head index per film (0 without age heads)
    space: LabelSpace
    unreadable: list[str]
    looks: np.ndarray | None = None  # (N, K) model.familiarity looks, from the same pass


def read_site(folder: Path, predictor: Predictor, age_group: str | None) -> SiteFilms:
    """Decode, admit and gate every film of the site; SiteError on an unknown label or films
    the gate refuses (naming them)."""
    from training.evaluate import model_label_space

    try:
        films = read_external(folder)
        space = model_label_space(predictor.metadata, set(films.labels))
    except DatasetError as error:
        raise SiteError(str(error)) from error
    patients = _patients(folder, films.paths)
    admitted, kept, unreadable, refused = [], [], [], []
    for index, path in enumerate(films.paths):
        try:
            image = decode_file(path)
        except ImageError as error:
            unreadable.append(f"{path.name}: {error}")
            continue
        try:
            admitted.append(predictor.admit(image))
            kept.append(index)
        except ImageError as error:
            refused.append(f"{path.relative_to(folder)}: {error}")
    features = looks = np.zeros((0, 0), np.float32)
    if kept:
        from training.feature_bank import features_and_looks

        features, looks = features_and_looks(predictor, np.stack(admitted))
        accepted = []
        for index, row in zip(kept, features, strict=True):
            try:
                predictor.ood.check(row)
                accepted.append(True)
            except ImageError as error:
                refused.append(f"{films.paths[index].relative_to(folder)}: {error}")
                accepted.append(False)
        features, looks, kept = features[accepted], looks[accepted], [
            i for i, ok in zip(kept, accepted, strict=True) if ok]
    if refused:
        raise SiteError(f"the gate refuses {len(refused)} of {len(films.paths)} films; remove "
                        "them (they are not frontal chest radiographs the model can read) and "
                        "try again:\n  " + "\n  ".join(refused[:SHOWN_REFUSALS])
                        + ("\n  ..." if len(refused) > SHOWN_REFUSALS else ""))
    if len(kept) < MIN_FILMS:
        raise SiteError(f"{len(kept)} usable films in {folder} ({len(unreadable)} unreadable); "
                        f"at least {MIN_FILMS} are needed to adapt and check the model")
    labels = np.array([space.keys.index(films.labels[i]) for i in kept], np.int64)
    return SiteFilms(features, labels, [patients[i] for i in kept],
                     _populations(predictor, features, age_group), space, unreadable, looks)


def _patients(folder: Path, paths: tuple[Path, ...]) -> list[str]:
    """Each film's patient from manifest.csv's patient_id, else the film itself."""
    by_file: dict[Path, str] = {}
    if (folder / MANIFEST).is_file():
        with (folder / MANIFEST).open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                name = row.get("file") or row.get("image")
                if name and row.get("patient_id"):
                    by_file[folder / name] = row["patient_id"]
    return [by_file.get(path, f"file:{path}") for path in paths]


def _populations(predictor: Predictor, features: np.ndarray, age_group: str | None
                 ) -> np.ndarray:
    """The age block each site film is trained and read in: the one given, else the base
    model's estimate per film, or the site's own group when at least SITE_GROUP_SHARE of its
    films are estimated in it (the rest are taken for misreads); 0 without age heads."""
    heads = predictor.age_heads
    if not heads:
        return np.zeros(len(features), np.int32)
    if age_group not in (None, "auto"):
        return np.full(len(features), age_group_index(age_group, heads), np.int32)
    return _populations_from_raw(predictor, head_of_predictor(predictor).raw_logits(features))


def _populations_from_raw(predictor: Predictor, raw: np.ndarray) -> np.ndarray:
    """_populations' estimate from the base head's (N, G*C) logits."""
    from model.populations import age_probabilities

    heads = predictor.age_heads
    estimate = np.asarray(age_probabilities(raw, len(heads), len(predictor.classes))
                          ).argmax(axis=1)
    shares = np.bincount(estimate, minlength=len(heads)) / max(1, len(estimate))
    if shares.max() >= SITE_GROUP_SHARE:
        return np.full(len(raw), int(shares.argmax()), np.int32)
    return estimate.astype(np.int32)


def holdout_split(site: SiteFilms, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held out), by patient and stratified by label (training.data)."""
    samples = [Sample(Path(str(index)), int(label), patient)
               for index, (label, patient) in enumerate(zip(site.labels, site.patients,
                                                            strict=True))]
    fit, held = split_by_patient(samples, fraction, seed)
    return (np.array([int(s.path.name) for s in fit], np.int64),
            np.array([int(s.path.name) for s in held], np.int64))
