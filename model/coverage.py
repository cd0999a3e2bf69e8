"""Which populations (age groups) and classes the model was trained and validated on.

Read from the run's metadata, so the Diagnose page and the model card can say plainly, next to
every suggestion, where the model has never been checked (e.g. bacterial vs viral pneumonia in
adults, or COVID-19 in children).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from model.age_groups import AGE_GROUP_WORDS, AGE_GROUPS
from model.labels import display_name
from model.run_dir import Metadata

AGE_GROUP_NAMES = {"adult": "adults", "pediatric": "children"}


@dataclass(frozen=True)
class Coverage:
    """Image counts for one age group and class: labelled exactly so, or within a label set."""

    age_group: str
    class_name: str
    train: int
    val: int
    train_untyped: int  # in a label set that includes the class (e.g. pneumonia, type unknown)
    val_untyped: int

    @property
    def validated(self) -> bool:
        return self.val > 0

    @property
    def status(self) -> str:
        if self.val:
            return "trained and validated" if self.train else "validated, not trained"
        if self.val_untyped:
            return "validated only within a label set (type unknown)"
        if self.train or self.train_untyped:
            return "trained, not validated"
        return "neither trained nor validated"

    def describe(self) -> str:
        age = AGE_GROUP_NAMES.get(self.age_group, self.age_group)
        return f"{display_name(self.class_name)} in {age}"


def _counts(populations: dict, label_sets: dict[str, list[str]]) -> tuple[Counter, Counter]:
    exact, untyped = Counter(), Counter()
    for population in populations.values():
        age = population["age_group"]
        for label, count in population["counts"].items():
            if label in label_sets:
                for member in label_sets[label]:
                    untyped[age, member] += count
            else:
                exact[age, label] += count
    return exact, untyped


def coverage(metadata: Metadata) -> list[Coverage]:
    """One row per age group and class; empty when the metadata records no populations."""
    populations = metadata.populations
    if not populations:
        return []
    label_sets = metadata.label_sets or {}
    train, train_untyped = _counts(populations.get("train", {}), label_sets)
    val, val_untyped = _counts(populations.get("val", {}), label_sets)
    return [
        Coverage(age, name, train[age, name], val[age, name], train_untyped[age, name],
                 val_untyped[age, name])
        for age in AGE_GROUPS for name in metadata.classes
    ]


def not_validated(metadata: Metadata) -> list[str]:
    """Plain phrases for every age group and class the model was not validated on."""
    return [f"{row.describe()} ({row.status})" for row in coverage(metadata)
            if not row.validated]


def validation_warning(metadata: Metadata, class_name: str) -> str | None:
    """What to say beside a suggestion of ``class_name``: the age groups it was not validated
    in, or None when it was validated in every age group."""
    gaps = [row for row in coverage(metadata)
            if row.class_name == class_name and not row.validated]
    if not gaps:
        return None
    groups = "; ".join(f"{AGE_GROUP_NAMES.get(row.age_group, row.age_group)}: {row.status}"
                       for row in gaps)
    return (f"{display_name(class_name)} has not been validated in every age group ({groups}). "
            "Weigh this suggestion accordingly.")


def untrained_classes(metadata: Metadata) -> dict[str, tuple[str, ...]]:
    """By age group as people name it ("adult", "child"): the classes that group's head was
    never trained on (no film of that group and class, not even within a label set). Empty
    when the metadata records no populations: nothing is then known to be missing."""
    missing: dict[str, tuple[str, ...]] = {}
    for row in coverage(metadata):
        if not (row.train or row.train_untyped):
            group = AGE_GROUP_WORDS.get(row.age_group, row.age_group)
            missing[group] = (*missing.get(group, ()), row.class_name)
    return missing
