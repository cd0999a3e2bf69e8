"""Age groups, as the data, the people and the age heads name them (no TensorFlow here, so the
app as a model-server client can use them too; the block arithmetic is model.populations)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
