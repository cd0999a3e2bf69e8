"""The forgetting guard: what an adapted head must not lose, read on the feature bank's val
part (every val film and the children's alone, age group given and not), whether a head kept it
within GUARD_COVID_RECALL / GUARD_CHILD_AUC / GUARD_CALLED_COVID, and the before/after summary
metrics.json's ``site.kept`` records. The site's own held-out films choose nothing; this rule
alone chooses the site weight, so it lives apart where it can be read and tested on its own.
"""

from __future__ import annotations

import numpy as np

from model.labels import COVID
from training.feature_bank import FeatureBank
from training.site_head import Head, figures, group_index

# Base val COVID-19 recall may fall by at most this. At 0.01 (one of the bank's 104 films) the
# lungs/ half took site weight 0.5 and recall on every val film fell 0.952 -> 0.946; at 0 it
# takes 0.2: 0.955, the site's other normals still 0.956 normal, 0.044 COVID-19.
GUARD_COVID_RECALL = 0.0
GUARD_CHILD_AUC = 0.005  # children's val pneumonia-vs-normal AUC may fall by at most this
GUARD_CALLED_COVID = 0.0  # val non-COVID films called COVID-19 may rise by at most this


def val_figures(head: Head, bank: FeatureBank, temperature: float, n_groups: int = 1) -> dict:
    """What the model must not lose, on the bank's val part: every val film, and the children's
    films alone, age group not known (marginal: "all", "children") and given (as training
    scores val: "all_age_given", "children_age_given")."""
    val = bank.part(bank.splits == "val")
    unknown = np.full(len(val.labels), -1, np.int32)
    given = np.array([group_index(age, n_groups) for age in val.age_groups], np.int32)
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
