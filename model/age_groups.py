"""Age groups, as the data, the people and the age heads name them (no TensorFlow here, so the
app as a model-server client can use them too; the block arithmetic is model.populations)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from model.labels import display_name

# The age groups of the data (training.data's Sample.age_group), in the order of the blocks.
AGE_GROUPS: tuple[str, ...] = ("adult", "pediatric")
# How the CLI, the JSON lines and the pages spell them.
AGE_GROUP_WORDS: dict[str, str] = {"adult": "adult", "pediatric": "child"}
UNKNOWN = -1  # a population index meaning "not known: estimate it"
# How sure the model's own estimate must be before a known age group that contradicts it is
# pointed out: below this, the film itself says little about the patient's age.
CONFIDENT_ESTIMATE = 0.9


def age_group_index(word: str | None, age_heads: Sequence[str]) -> int:
    """'adult' / 'child' / 'pediatric' / None -> the block index, or UNKNOWN."""
    if word is None or word in ("", "auto", "unknown"):
        return UNKNOWN
    names = {AGE_GROUP_WORDS.get(name, name): index for index, name in enumerate(age_heads)}
    names.update({name: index for index, name in enumerate(age_heads)})
    if word not in names:
        raise ValueError(f"unknown age group {word!r}; use one of {sorted(names)} or auto")
    return names[word]


def _films(group: str) -> str:
    return "a child's film" if group == "child" else "an adult's film"


@dataclass(frozen=True)
class AgeReading:
    """The age group a prediction was read for, how it was known, and what a reader must know
    about it: contradictions or impossible ages met on the way (``notes``, never the age
    itself) and the classes this group's head was never trained on (``not_assessed``)."""

    # As people read it: "adult" or "child" (AGE_GROUP_WORDS); None only for what is known
    # before the model when that is nothing but notes (the model then estimates the group).
    group: str | None
    source: str  # "dicom" (PatientAge or birth and study dates), "given" (a person), "estimated"
    probability: float | None = None  # the model's confidence in its estimate
    notes: tuple[str, ...] = ()
    not_assessed: tuple[str, ...] = ()

    def describe(self) -> str:
        """'child (from the DICOM header)', 'adult (estimated, 97%)'."""
        if self.source == "estimated":
            return f"{self.group} (estimated, {self.probability:.0%})"
        return f"{self.group} ({'from the DICOM header' if self.source == 'dicom' else 'given'})"

    def audit_fields(self) -> dict:
        """What an audit row keeps of it: the group used, its source, and the notes shown."""
        return {"age_group": self.group, "age_group_source": self.source,
                **({"age_notes": list(self.notes)} if self.notes else {})}


def known_age(header_group: str | None, given: str | None,
              header_problem: str | None = None) -> AgeReading | None:
    """What is known before the model: a person's choice wins over the DICOM header's age,
    and a contradiction between them is noted; a header age that could not be used
    (``header_problem``, model.dicom) is noted and leaves the group to the model's estimate.
    None when nothing is known and there is nothing to note."""
    notes = (header_problem,) if header_problem else ()
    header = AGE_GROUP_WORDS.get(header_group, header_group) if header_group else None
    if given not in (None, "", "auto", "unknown"):
        group = AGE_GROUP_WORDS.get(given, given)
        if header is not None and header != group:
            notes += (f"The reader chose {_films(group)}, but the DICOM header's age says "
                      f"{_films(header)}: it was read as the reader chose.",)
        return AgeReading(group, "given", notes=notes)
    if header is not None:
        return AgeReading(header, "dicom", notes=notes)
    return AgeReading(None, "estimated", notes=notes) if notes else None


def resolved_age(known: AgeReading | None, estimate: Mapping[str, float],
                 not_assessed: Mapping[str, tuple[str, ...]]) -> AgeReading:
    """The age group a film was read for: the known one, else the model's estimate
    (``estimate``: the model's probability of each group, as people name them), with a note
    when the model is confident the film is of the other group, and the classes the group's
    head was not trained on (``not_assessed``, by group)."""
    best = max(estimate, key=estimate.__getitem__)
    notes = known.notes if known is not None else ()
    if known is None or known.group is None:
        group, source, probability = best, "estimated", estimate[best]
    else:
        group, source, probability = known.group, known.source, None
        if best != group and estimate[best] >= CONFIDENT_ESTIMATE:
            how = "as the reader chose" if source == "given" else "from the DICOM header"
            notes += (f"The model is {estimate[best]:.0%} sure this is {_films(best)}, but it "
                      f"was read as {_films(group)} ({how}): check the patient's age.",)
    return AgeReading(group, source, probability, notes, tuple(not_assessed.get(group, ())))


def not_assessed_note(age: AgeReading) -> str | None:
    """'COVID-19 is not assessed for children: ...' for a group whose head lacks classes."""
    if not age.not_assessed:
        return None
    names = " and ".join(display_name(name) for name in age.not_assessed)
    verb = "is" if len(age.not_assessed) == 1 else "are"
    people = "children" if age.group == "child" else "adults"
    return (f"{names} {verb} not assessed for {people}: no such film of "
            f"{'a child' if age.group == 'child' else 'an adult'} was in training.")
