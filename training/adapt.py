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
SITE_WEIGHTS (each with the label anchor, then without: LABEL_ANCHORS) whose head keeps the base
val's COVID-19 recall (within GUARD_COVID_RECALL), its
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

Its parts: a site's films (training.site_films: MIN_FILMS, SITE_GROUP_SHARE), the head and its
fit (training.site_head: COVID_ANCHOR) and the forgetting guard (training.forgetting_guard:
GUARD_*); this module chooses the site weight, writes the run and is the CLI.
"""

from __future__ import annotations

import argparse
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

from model.age_groups import AGE_GROUPS
from model.job_status import DONE, REFUSED, RUNNING, write_status
from model.labels import COVID
from model.populations import block_targets
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
from training.data import LabelSpace, sampling_weights
from training.feature_bank import FeatureBank
from training.forgetting_guard import (
    GUARD_CALLED_COVID,
    GUARD_CHILD_AUC,
    GUARD_COVID_RECALL,
    guard_holds,
    kept_summary,
    val_figures,
)
from training.model_card import render, site_table
from training.site_films import SiteError, SiteFilms, holdout_split, read_site
from training.site_head import (
    ANCHOR,
    COVID_ANCHOR,
    L2_TO_BASE,
    Head,
    anchored,
    figures,
    fit_head,
    free_blocks,
    group_index,
    head_of_predictor,
)

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger("training.adapt")

HOLDOUT = 0.3
# Each site label weighs this many whole training classes; the guard takes the largest that
# keeps the base val (largest first: the most adaptation that forgets nothing measurable).
SITE_WEIGHTS = (1.0, 0.5, 0.2, 0.1, 0.05)
SITE_WEIGHT = None  # the default: auto, the guard chooses among SITE_WEIGHTS
# Bank films fitted to the base head's probabilities (plus the label anchor above) rather than
# their labels alone: distillation plus the anchor keeps COVID-19 recall where either alone
# lost it (docs/RESULTS.md, Site adaptation).
DISTILL = True
# With distillation, the label anchor's share of the bank films' weight, tried in this order at
# each site weight: the anchor (COVID-19 x COVID_ANCHOR), then distillation alone. Which one
# keeps the base val depends on the model: on the 2026-12-07 (WiSE) model only the anchor kept
# COVID-19 recall; on the soup shipped after it the anchor alone raised val non-COVID films
# called COVID-19 at every weight (0.023 -> 0.047 even at 0.05) and distillation alone held.
# The guard chooses, on the bank's val, never on the site's films.
LABEL_ANCHORS = (ANCHOR, 0.0)


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
    unknown = sorted(set(site.space.keys) - set(bank.space.keys))
    if unknown:
        raise SiteError(f"the site's {', '.join(unknown)} films have a label the feature bank "
                        f"does not hold (it holds {', '.join(bank.space.keys)}): put them in "
                        "those label folders, or rebuild the bank from data that has the label")
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
    anchors = LABEL_ANCHORS if distill else (None,)
    tried = []
    for weight, anchor in ((w, a) for w in weights_tried for a in anchors):
        features, targets, weights = training_set(bank, site, fit, n_groups, weight)
        soft = None
        if distill:
            features, targets, weights, soft = anchored(
                features, targets, weights, n_bank, bank_labels, covid_label, anchor=anchor)
        head = fit_head(base, features, targets, weights, l2, soft=soft, free=free)
        after = val_figures(head, bank, temperature, n_groups)
        holds = guard_holds(val_before, after)
        tried.append({"site_weight": weight, "label_anchor": anchor, "guard_holds": holds,
                      "covid_recall_age_given": after["all_age_given"]["recall"].get(COVID),
                      "children_pneumonia_vs_normal_auc_age_given":
                          after["children_age_given"]["pneumonia_vs_normal_auc"]})
        log.info("site weight %g, label anchor %s: forgetting guard %s", weight, anchor,
                 "holds" if holds else "fails")
        adapted, val_after, chosen, chosen_anchor = head, after, weight, anchor
        if holds:
            break
    if not tried[-1]["guard_holds"]:
        log.warning("the forgetting guard fails at every site weight tried: the adapted "
                    "model loses some of what the base model knew (metrics.json site.kept)")
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
        "label_anchor": chosen_anchor,
        "site_weights_tried": tried,
        "guard": {"holds": guard, "covid_recall_may_fall": GUARD_COVID_RECALL,
                  "children_auc_may_fall": GUARD_CHILD_AUC,
                  "called_covid_may_rise": GUARD_CALLED_COVID},
        "age_blocks": blocks,
        "adapted": (f"the head's {'/'.join(blocks)} age block(s) of {n_groups} refitted on the "
                    f"feature bank's {n_bank} training films "
                    + (("(to the base head, and to their labels with COVID-19 "
                         f"x{COVID_ANCHOR:g})" if chosen_anchor else "(to the base head alone)")
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


def training_set(bank: FeatureBank, site: SiteFilms, fit: np.ndarray, n_groups: int,
                 site_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, block targets and weights: the bank's train part, class-balanced with the
    base run's source balance, then the site's fit films, each site label ``site_weight``
    training classes."""
    train = bank.part(bank.splits == "train")
    space = bank.space
    bank_weights = sampling_weights(train.labels, list(train.sources), space, True, 0.5)
    bank_pops = np.array([group_index(age, n_groups) for age in train.age_groups])
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


def _site_masks(site: SiteFilms, space: LabelSpace) -> np.ndarray:
    """(N, classes) allowed-class masks of the site's films, in the bank's class order."""
    allowed = site.space.masks()[site.labels]
    order = [site.space.classes.index(name) for name in space.classes]
    return allowed[:, order]


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
