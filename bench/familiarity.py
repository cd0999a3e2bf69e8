"""How well the familiarity flag (model.familiarity) works, on real films; what Diagnose quotes.

    python -m bench.familiarity [--model RUN_DIR] [--data ../shared/data] [--out]

Prints, for the run's flag: the share of the feature bank's val films flagged unfamiliar, per
training source (the limit is set on them: about 5 % overall by construction), and of the run's
other val films (not in the bank, so not used for the limit: the honest rate); for each external
check (`lungs/`: adult normals from a hospital in no training set; `kermany_test_a/`: a later
batch of a training hospital) the share flagged and the model's error rate (top suggestion not
the film's label) on unfamiliar and on familiar films; and the share of a site's held-out films
flagged after onboarding it (its films added to the reference as training.adapt does: half of
the set, or 46 films, the issue's onboarding size; the head is not refitted, it does not matter
to the flag). The external checks are measured on, never fitted on (the onboarded reference is
this bench's own, thrown away). --out writes the figures into RUN_DIR/familiarity.json, which
the Diagnose page quotes for an unfamiliar film.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model.batch import classify
from model.decode import decode_file
from model.familiarity import Familiarity
from model.predictor import DEFAULT_RUN_DIR, Predictor
from model.run_dir import FAMILIARITY_FILE, write_json
from training import site_films
from training.config import SHARED_DATA
from training.external import read_external
from training.feature_bank import FeatureBank

CHECKS = ("lungs", "kermany_test_a")
ONBOARDED = 46  # films a hospital onboards with in issue 21's targets
SEED = 1337


def error_rates(wrong: np.ndarray, familiar: np.ndarray) -> dict:
    """Error rate and count on unfamiliar and on familiar films."""
    return {name: {"n": int(np.sum(mask)),
                   "error_rate": float(np.mean(wrong[mask])) if np.any(mask) else None}
            for name, mask in (("unfamiliar", ~familiar), ("familiar", familiar))}


def external_check(predictor: Predictor, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wrong, familiar) per accepted film of an external folder, through the product's path."""
    films = read_external(folder)
    wrong, familiar = [], []
    for outcome in classify(list(zip(films.paths, films.labels, strict=True)),
                            lambda item: decode_file(item[0]), predictor):
        prediction = outcome.prediction
        if prediction.refusal is None:
            wrong.append(prediction.label != outcome.item[1])
            familiar.append(bool(prediction.familiar))
    return np.array(wrong, bool), np.array(familiar, bool)


def after_onboarding(bank: FeatureBank, predictor: Predictor, folder: Path) -> dict:
    """Share of the site's held-out films flagged once half of it, or ONBOARDED films of that
    half, join the reference."""
    site = site_films.read_site(folder, predictor, None)
    fit, held = site_films.holdout_split(site, 0.5, SEED)
    result = {"held_out": int(len(held))}
    for key, chosen in (("half", fit), ("onboarded_46", fit[:ONBOARDED])):
        looks = np.concatenate([bank.looks, site.looks[chosen]])
        splits = np.concatenate([bank.splits, np.full(len(chosen), "site")])
        onboarded = Familiarity.fit(looks, splits, bank.look_layer)
        result[key] = {"fitted": int(len(chosen)),
                       "flagged": float(np.mean(~onboarded.familiar(site.looks[held])))}
    return result


def other_val(predictor: Predictor, seed: int = SEED) -> dict:
    """Share flagged among the val films of the run's data roots that are not in its bank (the
    limit was not set on them: the honest rate for known sources), per source."""
    from training.data import load_split, scan_split
    from training.evaluate import model_label_space
    from training.feature_bank import PER_GROUP, features_and_looks, subsample

    roots = [Path(root) for root in predictor.metadata.data_roots or []
             if (Path(root) / "val").is_dir()]
    if not roots:
        return {}
    pediatric = str(predictor.metadata.config.get("pediatric_sources", "kermany")).split(",")
    folders = {entry.name for root in roots for entry in (root / "val").iterdir()
               if entry.is_dir()}
    space = model_label_space(predictor.metadata, folders)
    samples = [sample for root in roots for sample in scan_split(root, "val", space, pediatric)]
    banked = {sample.path for sample in subsample(samples, PER_GROUP["val"], seed)}
    rest = [sample for sample in samples if sample.path not in banked]
    loaded = load_split(rest, predictor.image_size, "val not in the bank")
    flagged = ~predictor.familiarity.familiar(features_and_looks(predictor, loaded.images)[1])
    sources = np.array(loaded.sources)
    return {"n": int(len(flagged)), "flagged": float(np.mean(flagged)),
            "by_source": {str(source): {"n": int(np.sum(sources == source)),
                                        "flagged": float(np.mean(flagged[sources == source]))}
                          for source in sorted(set(loaded.sources))}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--data", type=Path,
                        default=SHARED_DATA)
    parser.add_argument("--out", action="store_true",
                        help=f"write the figures into RUN_DIR/{FAMILIARITY_FILE}")
    args = parser.parse_args(argv)
    predictor = Predictor.load(args.model)
    if predictor.familiarity is None:
        parser.error(f"{args.model} has no feature bank with looks: run `python -m "
                     f"training.feature_bank --model {args.model}`")
    missing = [name for name in CHECKS if not (args.data / name).is_dir()]
    if missing:
        parser.error(f"no {', '.join(missing)} under {args.data}")
    bank = FeatureBank.load(args.model)
    val = bank.part(bank.splits == "val")
    flagged_val = ~predictor.familiarity.familiar(val.looks)
    by_source = {str(source): {"n": int(count),
                               "flagged": float(np.mean(flagged_val[val.sources == source]))}
                 for source, count in sorted(Counter(val.sources.tolist()).items())}
    print(f"{predictor.version}: look layer {predictor.familiarity.layer}, "
          f"{predictor.familiarity.neighbours}-th nearest of {len(predictor.familiarity.reference)}"
          f" reference films; val flagged {np.mean(flagged_val):.1%} (limit set on them)")
    for source, row in by_source.items():
        print(f"  val {source}: {row['flagged']:.1%} of {row['n']}")
    others = other_val(predictor)
    if others:
        print(f"val films not in the bank (limit not set on them): flagged "
              f"{others['flagged']:.1%} of {others['n']}")
        for source, row in others["by_source"].items():
            print(f"  {source}: {row['flagged']:.1%} of {row['n']}")
    checks, pooled_wrong, pooled_familiar = {}, [], []
    for name in CHECKS:
        wrong, familiar = external_check(predictor, args.data / name)
        onboarding = after_onboarding(bank, predictor, args.data / name)
        checks[name] = {"n": int(len(wrong)), "flagged": float(np.mean(~familiar)),
                        **error_rates(wrong, familiar), "after_onboarding": onboarding}
        pooled_wrong.append(wrong)
        pooled_familiar.append(familiar)
        row = checks[name]
        print(f"{name}: flagged {row['flagged']:.1%} of {row['n']}; error rate unfamiliar "
              f"{_rate(row['unfamiliar'])}, familiar {_rate(row['familiar'])}; after "
              f"onboarding {onboarding['half']['fitted']} films: "
              f"{onboarding['half']['flagged']:.1%} of {onboarding['held_out']} held out "
              f"flagged, after {onboarding['onboarded_46']['fitted']}: "
              f"{onboarding['onboarded_46']['flagged']:.1%}")
    pooled = error_rates(np.concatenate(pooled_wrong), np.concatenate(pooled_familiar))
    checks["all"] = pooled
    print(f"both checks: error rate unfamiliar {_rate(pooled['unfamiliar'])}, familiar "
          f"{_rate(pooled['familiar'])}")
    if args.out:
        path = args.model / FAMILIARITY_FILE
        write_json(path, {
            "model": predictor.version,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "method": (f"cosine distance (about the reference mean) of the channel means of "
                       f"layer {predictor.familiarity.layer} to the "
                       f"{predictor.familiarity.neighbours}-th nearest feature-bank training "
                       f"or site film; limit: the bank's val films' 95th percentile"),
            "val": {"flagged": float(np.mean(flagged_val)), "by_source": by_source},
            "other_val": others,
            "external_checks": checks,
        })
        print(f"wrote {path}")
    return 0


def _rate(row: dict) -> str:
    return "n/a" if row["error_rate"] is None else f"{row['error_rate']:.1%} of {row['n']}"


if __name__ == "__main__":
    sys.exit(main())
