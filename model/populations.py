"""Population heads: one softmax over (age group x class), read per age group.

In the training data age and source predict the class (every child is from one hospital, every
COVID-19 film is an adult's), so a single head can call a film COVID-19 because it looks adult.
A run trained with age heads has ``len(age_heads) x len(classes)`` logits, one block per age
group, trained so that each image's target lies in its own group's block. Within a block the
age group is constant, so age cannot stand in for a class there:

* age group known (DICOM, or given by a person): the class logits are that group's block, and
  their softmax is P(class | image, age group);
* not known: the class logits are the log-sum-exp over the blocks, whose softmax is the
  marginal P(class | image), and P(age group | image) is the blocks' share of the mass.

The functions take and return backend tensors or NumPy arrays (``keras.ops``), so training's
NumPy evaluation and the predictor's compiled graph compute exactly the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from keras import ops

# The age groups of the data (training.data's Sample.age_group), in the order of the blocks.
AGE_GROUPS: tuple[str, ...] = ("adult", "pediatric")
# How the CLI, the JSON lines and the pages spell them.
AGE_GROUP_WORDS: dict[str, str] = {"adult": "adult", "pediatric": "child"}
UNKNOWN = -1  # a population index meaning "not known: estimate it"


def age_group_index(word: str | None, age_heads: Sequence[str]) -> int:
    """'adult' / 'child' / 'pediatric' / None -> the block index, or UNKNOWN."""
    if word is None or word in ("", "auto", "unknown"):
        return UNKNOWN
    names = {AGE_GROUP_WORDS.get(name, name): index for index, name in enumerate(age_heads)}
    names.update({name: index for index, name in enumerate(age_heads)})
    if word not in names:
        raise ValueError(f"unknown age group {word!r}; use one of {sorted(names)} or auto")
    return names[word]


def _blocks(raw_logits, n_groups: int, n_classes: int):
    return ops.reshape(raw_logits, (-1, n_groups, n_classes))


def class_logits(raw_logits, populations, n_groups: int, n_classes: int):
    """(N, G*C) block logits and (N,) int population indices (UNKNOWN: marginal) -> (N, C)."""
    blocks = _blocks(raw_logits, n_groups, n_classes)
    marginal = ops.logsumexp(blocks, axis=1)
    known = ops.maximum(ops.cast(populations, "int32"), 0)
    own = ops.take_along_axis(blocks, ops.reshape(known, (-1, 1, 1)) * ops.ones_like(
        blocks[:, :1, :], dtype="int32"), axis=1)[:, 0, :]
    is_known = ops.reshape(ops.cast(populations, "int32") >= 0, (-1, 1))
    return ops.where(is_known, own, marginal)


def age_probabilities(raw_logits, n_groups: int, n_classes: int):
    """(N, G*C) block logits -> (N, G) the model's estimate of each age group."""
    return ops.softmax(ops.logsumexp(_blocks(raw_logits, n_groups, n_classes), axis=2), axis=-1)


def block_targets(allowed, populations, n_groups: int):
    """(N, C) allowed-class masks and (N,) population indices -> (N, G*C) training targets:
    each image's allowed classes, in its own age group's block only."""
    allowed = np.asarray(allowed)
    targets = np.zeros((len(allowed), n_groups, allowed.shape[1]), dtype=allowed.dtype)
    targets[np.arange(len(allowed)), np.asarray(populations)] = allowed
    return targets.reshape(len(allowed), -1)


@dataclass(frozen=True)
class AgeReading:
    """The age group a prediction was read for, and how it was known."""

    group: str  # as people read it: "adult" or "child" (AGE_GROUP_WORDS)
    source: str  # "dicom" (PatientAge or birth and study dates), "given" (a person), "estimated"
    probability: float | None = None  # the model's confidence in its estimate

    def describe(self) -> str:
        """'child (from the DICOM header)', 'adult (estimated, 97%)'."""
        if self.source == "estimated":
            return f"{self.group} (estimated, {self.probability:.0%})"
        return f"{self.group} ({'from the DICOM header' if self.source == 'dicom' else 'given'})"


def known_age(header_group: str | None, given: str | None) -> AgeReading | None:
    """What is known before the model: a person's choice wins over the DICOM header's age;
    None (or "auto") for both leaves it to the model's estimate."""
    if given not in (None, "", "auto", "unknown"):
        return AgeReading(AGE_GROUP_WORDS.get(given, given), "given")
    if header_group is not None:
        return AgeReading(AGE_GROUP_WORDS.get(header_group, header_group), "dicom")
    return None
