"""Onboarding on real films: adapt a run to each external set as a "site", print before/after.

    python -m bench.site_adaptation [--model RUN_DIR] [--data ../shared/data] [--runs runs]

The ONE place where ../shared/data/lungs and kermany_test_a are fitted on, and only into
separately named runs under --runs (never model/artifacts): `lungs` (274 adult normals, split
by file) and `kermany_test_a` (children, split by patient), each half fitted, half held out.
For each: the time of `python -m training.adapt` (in-process, model load included), the held-out
site films and the base val before/after (training.adapt's table), the other set before/after
(does onboarding one hospital hurt another?), the share of films flagged unfamiliar
(model.familiarity) before and after, and COVID-19 recall and children's figures on every val
film of the run's data roots (not only the bank's), when those images are here. Each site's age
group is given (AGE_GROUPS), so only that age block is adapted; --age-group auto leaves it to
the model's estimate per film. The run needs a feature bank (training.feature_bank).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model.formatting import score
from model.labels import COVID
from model.predictor import DEFAULT_RUN_DIR, Predictor
from model.run_dir import FEATURE_BANK_FILE
from model.run_metrics import read_metrics
from training import adapt, forgetting_guard, site_films, site_head
from training.config import SHARED_DATA
from training.feature_bank import FeatureBank

SITES = {"lungs": 0.5, "kermany_test_a": 0.5}  # folder -> held-out share
# folder -> the site's age group, as an admin onboarding a hospital says it (--age-group)
AGE_GROUPS = {"lungs": "adult", "kermany_test_a": "child"}
FIGURES = ("normal_recall", "called_covid_among_non_covid", "pneumonia_vs_normal_auc",
           "accuracy")


def full_val(predictor: Predictor, runs: Path) -> FeatureBank | None:
    """Every val film of the run's data roots as pooled features (the bank holds at most 50 per
    source and label), cached under --runs per model version; None without the images."""
    from training.feature_bank import build_bank

    roots = [Path(root) for root in predictor.metadata.data_roots or []]
    if not roots or not all((root / "val").is_dir() for root in roots):
        return None
    cache = runs / f"full-val-{predictor.version}"
    if not (cache / FEATURE_BANK_FILE).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        build_bank(predictor, roots, {"train": 1, "val": 10 ** 9}, 1337).save(cache)
    bank = FeatureBank.load(cache)
    return bank.part(bank.splits == "val")


def val_line(head_before, head_after, val: FeatureBank, temperature: float,
             n_groups: int) -> str:
    """COVID-19 recall and children's figures on every val film, age group given, before/after."""
    def part(head) -> dict:
        return forgetting_guard.val_figures(head, val, temperature, n_groups)

    before, after = part(head_before), part(head_after)
    covid = [f["all_age_given"]["recall"].get(COVID) for f in (before, after)]
    auc = [f["children_age_given"]["pneumonia_vs_normal_auc"] for f in (before, after)]
    normal = [f["children_age_given"]["normal_recall"] for f in (before, after)]
    adult_called = [f["all_age_given"]["called_covid_among_non_covid"] for f in (before, after)]
    return (f"every val film ({len(val.labels)}, age given): COVID-19 recall {score(covid[0])} "
            f"-> {score(covid[1])}; called COVID-19 among non-COVID {score(adult_called[0])} -> "
            f"{score(adult_called[1])}; children's pneumonia-vs-normal AUC {score(auc[0])} -> "
            f"{score(auc[1])}, normal recall {score(normal[0])} -> {score(normal[1])}")


def flagged(predictor: Predictor, looks: np.ndarray) -> float:
    return float(np.mean(~predictor.familiarity.familiar(looks)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--data", type=Path,
                        default=SHARED_DATA)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--age-group", choices=("given", "auto"), default="given",
                        help="give each site's age group to training.adapt (default) or let "
                        "the model estimate it per film")
    args = parser.parse_args(argv)
    if not (args.model / FEATURE_BANK_FILE).is_file():
        parser.error(f"{args.model} has no {FEATURE_BANK_FILE}: run `python -m "
                     f"training.feature_bank --model {args.model}` first")
    missing = [name for name in SITES if not (args.data / name).is_dir()]
    if missing:
        parser.error(f"no {', '.join(missing)} under {args.data}")
    base = Predictor.load(args.model)
    sites = {name: site_films.read_site(args.data / name, base, None) for name in SITES}
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    bank = FeatureBank.load(args.model)
    val = full_val(base, args.runs)
    print(f"base model {base.version}; the bank's val films flagged unfamiliar: "
          f"{flagged(base, bank.looks[bank.splits == 'val']):.1%} (the limit is set on "
          f"them)\n")
    for name, holdout in SITES.items():
        out = args.runs / f"site-{name}-{stamp}"
        started = time.perf_counter()
        adapt.main(["--model", str(args.model), "--site", str(args.data / name), "--out",
                    str(out), "--name", name, "--holdout", str(holdout), "--age-group",
                    AGE_GROUPS[name] if args.age_group == "given" else "auto"])
        seconds = time.perf_counter() - started
        adapted = Predictor.load(out)
        report = read_metrics(out).site
        print(f"\n## {name} as a site: {report['n']} films, {report['fitted_on']} fitted, "
              f"{report['held_out']} held out by {report['held_out_by']}; "
              f"training.adapt took {seconds:.0f} s\n")
        print(f"age block(s) adapted: {', '.join(report['age_blocks'])}; site weight "
              f"{report['site_weight']:g} (tried: " + ", ".join(
                  f"{row['site_weight']:g}"
                  + (" without the label anchor" if row.get("label_anchor") == 0 else "")
                  + f" guard {'holds' if row['guard_holds'] else 'fails'}"
                  for row in report["site_weights_tried"]) + ")")
        site = sites[name]
        if val is not None:
            print(val_line(site_head.head_of_predictor(base),
                           site_head.head_of_predictor(adapted), val, base.temperature,
                           max(1, len(base.age_heads))))
        _, held = site_films.holdout_split(site, holdout, 1337)
        print(f"held-out {name} films flagged unfamiliar: before "
              f"{flagged(base, site.looks[held]):.0%}, after "
              f"{flagged(adapted, site.looks[held]):.0%}")
        for other_name, other in sites.items():
            if other_name == name:
                continue
            before, after = (site_head.figures(site_head.head_of_predictor(p), other.features,
                                               other.labels, other.populations, other.space,
                                               p.temperature)
                             for p in (base, adapted))
            cells = "; ".join(f"{key} {score(before[key])} -> {score(after[key])}"
                              for key in FIGURES)
            print(f"{other_name} (not fitted on): {cells}; flagged unfamiliar "
                  f"{flagged(base, other.looks):.0%} -> {flagged(adapted, other.looks):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
