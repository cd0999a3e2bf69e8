"""Onboard a hospital: refit a run's head on its own films, report before/after, write a new run.

    python -m training.adapt --model RUN_DIR --site DIR --out NEW_RUN_DIR [--name SITE]
        [--holdout 0.3] [--site-weight auto|W] [--age-group adult|child|auto] [--status FILE]

DIR holds the site's films as `<LABEL>/*` (a class or a label set; `NORMAL` alone is enough),
or a `manifest.csv` (training.external's layouts); a `patient_id` column, when present, keeps
each patient's films on one side of the held-out split (else films are split one by one).

What is adapted, and why: only the head (the logits Dense layer), and of it only the age
block(s) the site's films are read in (``--age-group``, else the model's estimate: the site's
majority group when it holds SITE_GROUP_SHARE of the films, else per film), so
a children's site cannot move the adults' block and vice versa. It is fitted on the run's
feature bank (training.feature_bank: its training part, class-balanced, each film fitted both to
the base head's own probabilities, learning without forgetting, and to its label, COVID-19
films weighing COVID_ANCHOR times more, so COVID-19 stays COVID-19) plus the site's films (to
their labels), each site label weighing ``site_weight`` times a whole training class, with an
L2 pull towards the base head. ``site_weight`` is chosen by a forgetting guard: the largest of
SITE_WEIGHTS whose head keeps the base val's COVID-19 recall (within GUARD_COVID_RECALL), its
non-COVID films called COVID-19 (GUARD_CALLED_COVID) and children's pneumonia-vs-normal AUC
(within GUARD_CHILD_AUC), read with the films' age group given, as training scores val; when
none does, the smallest, said in the report. The held-out site films choose nothing; they are only
reported. The backbone stays frozen, so the out-of-distribution gate, Grad-CAM layer,
calibration and the bank's features all stay valid, and each fit takes seconds. Temperature and
thresholds are left as they were.

What it measured on real sites: docs/RESULTS.md (Site adaptation).

Refused, with a message and nothing written: an existing --out, an unknown label folder,
films the gate refuses (listed), fewer than MIN_FILMS usable films, a site name or adapted
version too long to store (model.site_names). ``--status FILE`` keeps a JSON status file
(model.job_status) for whoever runs it in the background (the Sites page).
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from model.age_groups import AGE_GROUPS, age_group_index
from model.calibration import softmax
from model.decode import decode_file
from model.errors import ImageError
from model.job_status import DONE, REFUSED, RUNNING, write_status
from model.labels import COVID
from model.populations import block_targets, class_logits
from model.run_dir import (
    CHECKPOINTS_DIR,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    RunFileError,
    read_metadata,
    write_metadata,
)
from model.run_metrics import set_metrics_key
from model.site_names import SiteNameError, adapted_version, site_name
from training.data import DatasetError, LabelSpace, Sample, sampling_weights, split_by_patient
from training.external import MANIFEST, accepted_figures, read_external
from training.feature_bank import FeatureBank
from training.model_card import render, site_table

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger("training.adapt")

MIN_FILMS = 20
HOLDOUT = 0.3
# Each site label weighs this many whole training classes; the guard takes the largest that
# keeps the base val (largest first: the most adaptation that forgets nothing measurable).
SITE_WEIGHTS = (1.0, 0.5, 0.2, 0.1, 0.05)
SITE_WEIGHT = None  # the default: auto, the guard chooses among SITE_WEIGHTS
# Base val COVID-19 recall may fall by at most this. At 0.01 (one of the bank's 104 films) the
# lungs/ half took site weight 0.5 and recall on every val film fell 0.952 -> 0.946; at 0 it
# takes 0.2: 0.955, the site's other normals still 0.956 normal, 0.044 COVID-19.
GUARD_COVID_RECALL = 0.0
GUARD_CHILD_AUC = 0.005  # children's val pneumonia-vs-normal AUC may fall by at most this
GUARD_CALLED_COVID = 0.0  # val non-COVID films called COVID-19 may rise by at most this
L2_TO_BASE = 1e-3  # pull of the head towards the base head, per weight
ANCHOR = 1.0  # the bank's films also fitted to their labels, with this share of their weight
COVID_ANCHOR = 3.0  # ... COVID-19 films this many times more (keeps COVID-19 recall)
MAX_ITERATIONS = 300
# Bank films fitted to the base head's probabilities (plus the label anchor above) rather than
# their labels alone: distillation plus the anchor keeps COVID-19 recall where either alone
# lost it (docs/RESULTS.md, Site adaptation).
DISTILL = True
SHOWN_REFUSALS = 10
# --age-group auto: a site whose films are estimated at least this share in one age group is
# that group's: read per film, a few children estimated as adults would move the adults' block
# (docs/RESULTS.md, Site adaptation).
SITE_GROUP_SHARE = 0.9


class SiteError(ValueError):
    """A site folder that cannot be onboarded as it is; the message says what to do."""


@dataclass(frozen=True)
class Head:
    """The logits Dense layer's weights: (D, G*C) kernel and (G*C,) bias."""

    kernel: np.ndarray
    bias: np.ndarray

    def raw_logits(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float64) @ self.kernel + self.bias


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


def head_of(model, layer_name: str) -> Head:
    kernel, bias = model.get_layer(layer_name).get_weights()
    return Head(kernel.astype(np.float64), bias.astype(np.float64))


def probabilities(head: Head, features: np.ndarray, populations: np.ndarray,
                  n_classes: int, temperature: float) -> np.ndarray:
    """Calibrated class probabilities as the predictor gives them (model.populations)."""
    raw = head.raw_logits(features)
    n_groups = raw.shape[1] // n_classes
    logits = np.asarray(class_logits(raw, np.asarray(populations, np.int32), n_groups,
                                     n_classes))
    return softmax(logits, temperature)


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


def head_of_predictor(predictor: Predictor) -> Head:
    return head_of(predictor.model, predictor.metadata.logits_layer)


def holdout_split(site: SiteFilms, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held out), by patient and stratified by label (training.data)."""
    samples = [Sample(Path(str(index)), int(label), patient)
               for index, (label, patient) in enumerate(zip(site.labels, site.patients,
                                                            strict=True))]
    fit, held = split_by_patient(samples, fraction, seed)
    return (np.array([int(s.path.name) for s in fit], np.int64),
            np.array([int(s.path.name) for s in held], np.int64))


def fit_head(base: Head, features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
             l2: float = L2_TO_BASE, max_iterations: int = MAX_ITERATIONS,
             soft: np.ndarray | None = None, free: np.ndarray | None = None) -> Head:
    """The head minimising the weighted set cross-entropy (one softmax over all blocks, as
    training.losses) plus ``l2`` x squared distance to the base head; L-BFGS from the base.

    ``soft``: rows where it is true are fitted to the base head's own probabilities instead
    (distillation, "learning without forgetting"): the bank keeps what the model said.
    ``free``: (G*C,) bool, the logits (columns) that may change; the others stay the base's.
    """
    x = features.astype(np.float64)
    weights = weights / weights.sum()
    shape = base.kernel.shape
    soft = np.zeros(len(x), bool) if soft is None else soft
    mask = np.ones(shape[1]) if free is None else np.asarray(free, np.float64)
    raw_base = base.raw_logits(x[soft])
    base_probabilities = np.exp(raw_base - logsumexp(raw_base, axis=1, keepdims=True))

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        kernel, bias = theta[:-shape[1]].reshape(shape), theta[-shape[1]:]
        raw = x @ kernel + bias
        total = logsumexp(raw, axis=1)
        inside = logsumexp(np.where(targets, raw, -np.inf), axis=1)
        p_all = np.exp(raw - total[:, None])
        p_in = np.where(targets, np.exp(raw - inside[:, None]), 0.0)
        p_in[soft] = base_probabilities
        inside[soft] = (base_probabilities * raw[soft]).sum(axis=1)
        residual = (p_all - p_in) * weights[:, None]
        delta_k, delta_b = kernel - base.kernel, bias - base.bias
        loss = float(weights @ (total - inside) + l2 * ((delta_k ** 2).sum()
                                                        + (delta_b ** 2).sum()))
        grad = np.concatenate([((x.T @ residual + 2 * l2 * delta_k) * mask).ravel(),
                               (residual.sum(axis=0) + 2 * l2 * delta_b) * mask])
        return loss, grad

    start = np.concatenate([base.kernel.ravel(), base.bias])
    result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iterations})
    return Head(result.x[:-shape[1]].reshape(shape), result.x[-shape[1]:])


def training_set(bank: FeatureBank, site: SiteFilms, fit: np.ndarray, n_groups: int,
                 site_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, block targets and weights: the bank's train part, class-balanced with the
    base run's source balance, then the site's fit films, each site label ``site_weight``
    training classes."""
    train = bank.part(bank.splits == "train")
    space = bank.space
    bank_weights = sampling_weights(train.labels, list(train.sources), space, True, 0.5)
    bank_pops = np.array([_group_index(age, n_groups) for age in train.age_groups])
    bank_allowed = space.masks()[train.labels]
    site_allowed = _site_masks(site, space)[fit]
    site_labels = site.labels[fit]
    per_class = 1.0 / len(space.classes)
    site_weights = np.array([site_weight * per_class / np.sum(site_labels == label)
                             for label in site_labels])
    features = np.concatenate([train.features.astype(np.float64), site.features[fit]])
    targets = np.concatenate([block_targets(bank_allowed, bank_pops, n_groups),
                              block_targets(site_allowed, site.populations[fit], n_groups)])
    return features, targets.astype(bool), np.concatenate([bank_weights, site_weights])


def anchored(features: np.ndarray, targets: np.ndarray, weights: np.ndarray, n_bank: int,
             bank_labels: np.ndarray, covid_label: int | None, anchor: float = ANCHOR,
             covid_anchor: float = COVID_ANCHOR
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """training_set's rows plus the first ``n_bank`` (the bank's) again, fitted to their labels
    with ``anchor`` x their weight (COVID-19 films ``covid_anchor`` x more); and the rows fitted
    to the base head instead (the bank's first copies)."""
    extra = anchor * weights[:n_bank] * np.where(bank_labels == covid_label, covid_anchor, 1.0)
    soft = np.concatenate([np.ones(n_bank, bool), np.zeros(len(features), bool)])
    return (np.concatenate([features, features[:n_bank]]),
            np.concatenate([targets, targets[:n_bank]]),
            np.concatenate([weights, extra]), soft)


def free_blocks(populations: np.ndarray, n_groups: int, n_classes: int) -> np.ndarray:
    """(G*C,) bool: the logits of the age blocks these films are read in."""
    free = np.zeros((n_groups, n_classes), bool)
    free[np.unique(populations)] = True
    return free.ravel()


def _site_masks(site: SiteFilms, space: LabelSpace) -> np.ndarray:
    """(N, classes) allowed-class masks of the site's films, in the bank's class order."""
    allowed = site.space.masks()[site.labels]
    order = [site.space.classes.index(name) for name in space.classes]
    return allowed[:, order]


def _group_index(age_group: str, n_groups: int) -> int:
    return AGE_GROUPS.index(str(age_group)) if n_groups > 1 else 0


def figures(head: Head, features: np.ndarray, labels: np.ndarray, populations: np.ndarray,
            space: LabelSpace, temperature: float) -> dict:
    """training.external's figures for these films under ``head``."""
    probs = probabilities(head, features, populations, len(space.classes), temperature)
    return accepted_figures(labels, probs, space)


def val_figures(head: Head, bank: FeatureBank, temperature: float, n_groups: int = 1) -> dict:
    """What the model must not lose, on the bank's val part: every val film, and the children's
    films alone, age group not known (marginal: "all", "children") and given (as training
    scores val: "all_age_given", "children_age_given")."""
    val = bank.part(bank.splits == "val")
    unknown = np.full(len(val.labels), -1, np.int32)
    given = np.array([_group_index(age, n_groups) for age in val.age_groups], np.int32)
    pediatric = val.age_groups == "pediatric"
    result = {}
    for suffix, populations in (("", unknown), ("_age_given", given)):
        result["all" + suffix] = _kept(figures(head, val.features, val.labels, populations,
                                               bank.space, temperature))
        result["children" + suffix] = _kept(figures(
            head, val.features[pediatric], val.labels[pediatric], populations[pediatric],
            bank.space, temperature))
    return result


def guard_holds(before: dict, after: dict) -> bool:
    """The forgetting guard: base val COVID-19 recall, children's pneumonia-vs-normal AUC and
    non-COVID films called COVID-19, age group given, kept within GUARD_COVID_RECALL /
    GUARD_CHILD_AUC / GUARD_CALLED_COVID (a figure the val cannot give, e.g. no children's
    films in the bank, is not guarded)."""
    covid_before = before["all_age_given"]["recall"].get(COVID)
    covid_after = after["all_age_given"]["recall"].get(COVID)
    auc_before = before["children_age_given"]["pneumonia_vs_normal_auc"]
    auc_after = after["children_age_given"]["pneumonia_vs_normal_auc"]
    called_before = before["all_age_given"].get("called_covid_among_non_covid")
    called_after = after["all_age_given"].get("called_covid_among_non_covid")
    return ((covid_before is None or covid_after >= covid_before - GUARD_COVID_RECALL - 1e-9)
            and (auc_before is None or auc_after >= auc_before - GUARD_CHILD_AUC - 1e-9)
            and (called_before is None
                 or called_after <= called_before + GUARD_CALLED_COVID + 1e-9))


def kept_summary(before: dict, after: dict) -> dict:
    """metrics.json site.kept: COVID-19 recall and children's figures on the base val, before
    and after, age group given and not."""
    def pick(part: dict, figure: str) -> float | None:
        return part["recall"].get(COVID) if figure == "covid_recall" else part.get(figure)

    summary = {}
    for suffix in ("_age_given", ""):
        for where, figure in (("all", "covid_recall"), ("children", "pneumonia_vs_normal_auc"),
                              ("children", "normal_recall"),
                              ("children", "pneumonia_vs_normal_accuracy")):
            name = (f"{figure}{suffix}" if where == "all" else f"children_{figure}{suffix}")
            summary[name] = {"before": pick(before[where + suffix], figure),
                             "after": pick(after[where + suffix], figure)}
    return summary


def _kept(figures_: dict) -> dict:
    keys = ("recall", "normal_recall", "called_covid_among_non_covid", "pneumonia_vs_normal_auc",
            "pneumonia_vs_normal_accuracy", "accuracy", "macro_f1", "called")
    return {key: figures_[key] for key in keys}


@dataclass(frozen=True)
class Adaptation:
    head: Head
    report: dict  # metrics.json's "site" key
    bank: FeatureBank  # the base bank plus the site's fit films


def adapt(predictor: Predictor, bank: FeatureBank, site: SiteFilms, name: str,
          holdout: float = HOLDOUT, site_weight: float | None = SITE_WEIGHT, seed: int = 1337,
          l2: float = L2_TO_BASE, distill: bool = DISTILL) -> Adaptation:
    """Refit the site's age block(s) of the head on bank + site films; ``site_weight`` None
    chooses it by the forgetting guard (SITE_WEIGHTS, largest first); held-out site films and
    bank val scored before and after."""
    started = time.perf_counter()
    if bank.model_version.split("+site-")[0] != predictor.version.split("+site-")[0]:
        raise SiteError(f"the feature bank was made by {bank.model_version}, not by "
                        f"{predictor.version}: rebuild it (training.feature_bank)")
    n_groups = max(1, len(predictor.age_heads))
    n_classes = len(bank.space.classes)
    fit, held = holdout_split(site, holdout, seed)
    base = head_of_predictor(predictor)
    temperature = predictor.temperature
    n_bank = int(np.sum(bank.splits == "train"))
    free = free_blocks(site.populations[fit], n_groups, n_classes)
    covid_label = bank.keys.index(COVID) if COVID in bank.keys else None
    val_before = val_figures(base, bank, temperature, n_groups)
    bank_labels = bank.labels[bank.splits == "train"]
    weights_tried = (site_weight,) if site_weight is not None else SITE_WEIGHTS
    tried, adapted, val_after, chosen = [], base, val_before, weights_tried[-1]
    for weight in weights_tried:
        features, targets, weights = training_set(bank, site, fit, n_groups, weight)
        soft = None
        if distill:
            features, targets, weights, soft = anchored(
                features, targets, weights, n_bank, bank_labels, covid_label)
        head = fit_head(base, features, targets, weights, l2, soft=soft, free=free)
        after = val_figures(head, bank, temperature, n_groups)
        holds = guard_holds(val_before, after)
        tried.append({"site_weight": weight, "guard_holds": holds,
                      "covid_recall_age_given": after["all_age_given"]["recall"].get(COVID),
                      "children_pneumonia_vs_normal_auc_age_given":
                          after["children_age_given"]["pneumonia_vs_normal_auc"]})
        log.info("site weight %g: forgetting guard %s", weight, "holds" if holds else "fails")
        if not holds and weight == weights_tried[-1]:
            log.warning("the forgetting guard fails at every site weight tried: the adapted "
                        "model loses some of what the base model knew (metrics.json site.kept)")
        adapted, val_after, chosen = head, after, weight
        if holds:
            break
    site_space = bank.space

    def held_out(head: Head) -> dict | None:
        if not len(held):
            return None
        allowed_labels = np.array([site_space.keys.index(site.space.keys[label])
                                   for label in site.labels[held]])
        return figures(head, site.features[held], allowed_labels, site.populations[held],
                       site_space, temperature)

    blocks = [AGE_GROUPS[g] if n_groups > 1 else "the only" for g in np.unique(
        site.populations[fit])]
    guard = tried[-1]["guard_holds"]
    report = {
        "name": name,
        "base_model": predictor.version,
        "n": int(len(site.labels)),
        "unreadable": len(site.unreadable),
        "labels": {key: int(np.sum(site.labels == index))
                   for index, key in enumerate(site.space.keys) if np.any(site.labels == index)},
        "fitted_on": int(len(fit)),
        "held_out": int(len(held)),
        "held_out_by": "patient" if any(not p.startswith("file:") for p in site.patients)
        else "file",
        "held_out_before": held_out(base),
        "held_out_after": held_out(adapted),
        "val_before": val_before,
        "val_after": val_after,
        "kept": kept_summary(val_before, val_after),
        "site_weight": chosen,
        "site_weights_tried": tried,
        "guard": {"holds": guard, "covid_recall_may_fall": GUARD_COVID_RECALL,
                  "children_auc_may_fall": GUARD_CHILD_AUC,
                  "called_covid_may_rise": GUARD_CALLED_COVID},
        "age_blocks": blocks,
        "adapted": (f"the head's {'/'.join(blocks)} age block(s) of {n_groups} refitted on the "
                    f"feature bank's {n_bank} training films "
                    + (f"(to the base head, and to their labels with COVID-19 x{COVID_ANCHOR:g})"
                       if distill else "(to their labels)")
                    + f" and {len(fit)} site films (site weight {chosen:g}, "
                    + ("chosen by the forgetting guard" if site_weight is None else "given")
                    + (", guard held" if guard else ", GUARD NOT MET"
                       + (" at the smallest weight" if site_weight is None else ""))
                    + f"; L2 to the base head {l2:g}); backbone, temperature, gate unchanged"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    site_labels = np.array([site_space.keys.index(site.space.keys[label])
                            for label in site.labels[fit]])
    groups = [AGE_GROUPS[p] if n_groups > 1 else "adult" for p in site.populations[fit]]
    return Adaptation(adapted, report,
                      bank.extended(site.features[fit], site_labels, groups, f"site:{name}",
                                    looks=None if site.looks is None else site.looks[fit]))


def write_run(base_dir: Path, out: Path, predictor: Predictor, adaptation: Adaptation) -> None:
    """The adapted run directory: the base's files, the new head, metadata, metrics, bank and
    card; written beside ``out`` and renamed into place, so a failure leaves nothing."""
    name = adaptation.report["name"]
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        shutil.copytree(base_dir, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(CHECKPOINTS_DIR, MODEL_FILE))
        model = predictor.model
        layer = model.get_layer(predictor.metadata.logits_layer)
        original = layer.get_weights()
        layer.set_weights([adaptation.head.kernel.astype(original[0].dtype),
                           adaptation.head.bias.astype(original[1].dtype)])
        model.save(staging / MODEL_FILE)
        layer.set_weights(original)
        metadata = read_metadata(base_dir)
        base_version = metadata.version
        adapted_from = {"base_model": base_version, "site": name,
                        "adapted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "adapted": adaptation.report["adapted"]}
        write_metadata(staging, replace(metadata, version=adapted_version(base_version, name),
                                        adapted_from=adapted_from))
        shutil.copy2(base_dir / METRICS_FILE, staging / METRICS_FILE)
        set_metrics_key(staging, "site", adaptation.report)
        adaptation.bank.save(staging)
        (staging / MODEL_CARD_FILE).write_text(render(staging, []))
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _site_weight(text: str) -> float | None:
    if text == "auto":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("the site weight must be positive")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, metavar="RUN_DIR")
    parser.add_argument("--site", type=Path, required=True, metavar="DIR")
    parser.add_argument("--out", type=Path, required=True, metavar="NEW_RUN_DIR")
    parser.add_argument("--name", help="the site's name (default: DIR's folder name)")
    parser.add_argument("--holdout", type=float, default=HOLDOUT,
                        help=f"share of the site's films held out to check (default {HOLDOUT})")
    parser.add_argument("--site-weight", type=_site_weight, default=None, metavar="auto|W",
                        help="each site label's weight in training classes (default auto: the "
                        f"largest of {', '.join(map(str, SITE_WEIGHTS))} the forgetting guard "
                        "passes)")
    parser.add_argument("--age-group", choices=("adult", "child", "auto"), default="auto",
                        help="the site's patients' age group (default: the model's estimate)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--status", type=Path, metavar="FILE",
                        help="keep FILE up to date with where the run stands, as JSON "
                        "(model.job_status): running, then done, or refused and why")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    def refuse(message: str) -> None:
        if args.status:
            write_status(args.status, REFUSED, message)
        parser.error(message)

    if args.status:
        write_status(args.status, RUNNING, "reading the site's films")
    if args.out.exists():
        refuse(f"{args.out} exists; choose a new run directory")
    if not args.site.is_dir():
        refuse(f"no site folder at {args.site}")
    if not 0 < args.holdout < 1:
        refuse("--holdout must be between 0 and 1")
    from model.predictor import ModelLoadError, Predictor

    started = time.perf_counter()
    try:
        name = site_name(args.name or args.site.resolve().name)
        version = adapted_version(read_metadata(args.model).version, name)
        predictor = Predictor.load(args.model)
        bank = FeatureBank.load(args.model)
        log.info("reading the site's films")
        site = read_site(args.site, predictor, args.age_group)
        log.info("adapting on %d films", len(site.labels))
        adaptation = adapt(predictor, bank, site, name, args.holdout, args.site_weight,
                           args.seed)
    except (ModelLoadError, RunFileError, SiteError, SiteNameError) as error:
        refuse(str(error))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log.info("writing %s", args.out)
    write_run(args.model, args.out, predictor, adaptation)
    print(site_table(adaptation.report))
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    if args.status:
        write_status(args.status, DONE, f"wrote {version}", args.out, version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
